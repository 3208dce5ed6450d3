"""Evaluation: benchmark files into samples, and the scores of the model's answers to them.

    benchmarks.py       benchmark files in their published layouts -> Benchmark (EvalSample list,
                        malformed records listed in `problems`): COCO/NoCaps and Karpathy-split
                        captions, Clotho audio captions, VQAv2, TextVQA, ScienceQA, POPE, MME
    caption_metrics.py  BLEU-1..4, METEOR, ROUGE-L, CIDEr by pycocoevalcap (PTB-tokenized; needs Java)
    vqa_metrics.py      the VQA answer normalisation and the 10-annotator accuracy
    choice_metrics.py   the option or yes/no an answer gives; accuracy, POPE's precision/recall/F1
                        and yes-ratio, MME's accuracy+ and scores
    eval_config.py      the evaluation YAML: benchmarks, their files, the prompt per benchmark
    runner.py           this process's share of a benchmark, answered greedily in batches
    predictions.py      predictions appended as they are made; a relaunch skips what is done
    scoring.py          a benchmark's metrics from its samples and predictions, by task

main_eval.py (and `. exps/eval.sh`) drives them: read the YAML and the benchmarks, load the model,
answer (one process or several under torchrun), score on rank 0, write metrics.json and metrics.md.

Imports flow one way: evaluation/ may use data/ and model/ (benchmarks.py takes the captioning
instruction from model/tokenizer.py); only the entry point main_eval.py imports evaluation/. The package
imports nothing on its own, and caption_metrics.py imports pycocoevalcap only when it scores.
"""
