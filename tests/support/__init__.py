"""What tests share, imported one way (tests import support, never the other way round).

    tiny_models.py     tiny ImageBindLLM / ImageBind configs, random inputs, the user's files written
                       from a model (Meta's layout, split like Meta's shards), adapter checkpoints
    data_files.py      images, caption tables, instruction JSON and YAML configs made on the fly
    hf_folders.py      tiny Hugging Face LLaMA folders (transformers' own save_pretrained)
    engine_doubles.py  a toy model, a list sampler and batches for the engine's loop and checkpoints
"""

import socket
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
CONTRACTS_DIR = REPO_ROOT / "tests" / "contracts"


def free_port() -> int:
    """A TCP port on the loopback that nothing listens on now (for a process group's rendezvous)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]

