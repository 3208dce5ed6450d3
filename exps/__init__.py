"""Launchers and the CPU demo.

    pretrain.sh, finetune.sh   sourced launchers: torchrun with the published recipe (launch.sh)
    setup_venv.sh              the project's .venv with the pinned packages
    demo.sh                    the tiny demo: assets, both phases through the launchers, a report
    tiny_assets.py             the demo's files: a tiny LLaMA folder, tokenizer, ImageBind, data
    tiny_language_model.py     pre-trains the tiny LLaMA a few seconds, so the adapter can learn
    demo_report.py             generation on held-out pictures and the demo's summary
    modality_examples.py       a sound, a clip, a depth map, a thermal image, IMU data, a point cloud
    build_visual_cache.py      python -m exps.build_visual_cache: a visual cache from your images
    supervise.py               the launchers' job process (stops, the log, parent death)
"""
