"""Make a tiny LLaMA a language model first: plain next-token training on a few texts, on the CPU.

    weights = train_language_model(weights, params, tokenizer, texts, steps=300)

A real base (Meta's LLaMA) is a pretrained language model, and ImageBind-LLM never changes it in
pre-training: it trains a bridge that adds one visual token to every layer's attention. That token
can steer what the frozen model already tends to say (which colour, which shape) but cannot teach a
random network to speak: on random weights the caption loss stalls and the generated captions are
noise. So the demo's tiny LLaMA reads the demo's own text first, as a real base has read the web,
and is then frozen and saved in Meta's layout like any other base.
"""

from __future__ import annotations

import logging
from typing import Mapping, Sequence

import torch
import torch.nn.functional as F

from model.llama import ModelArgs, Transformer
from model.meta_device import on_meta_device
from model.tokenizer import PAD_ID, Tokenizer  # PAD_ID: the project's padding id; no loss there

logger = logging.getLogger(__name__)


def token_batch(tokenizer: Tokenizer, texts: Sequence[str]) -> torch.Tensor:
    """LongTensor[N, S]: bos + text + eos for each text, right-padded with PAD_ID."""
    sequences = [tokenizer.encode(text, bos=True, eos=True) for text in texts]
    batch = torch.full((len(sequences), max(map(len, sequences))), PAD_ID, dtype=torch.long)
    for row, ids in enumerate(sequences):
        batch[row, :len(ids)] = torch.tensor(ids)
    return batch


def next_token_loss(model: Transformer, tokens: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy of every next token that is not padding."""
    logits = model(tokens[:, :-1])  # [N, S-1, vocab]
    return F.cross_entropy(logits.flatten(0, 1), tokens[:, 1:].flatten(), ignore_index=PAD_ID)


def train_language_model(weights: Mapping[str, torch.Tensor], params: Mapping, tokenizer: Tokenizer,
                         texts: Sequence[str], steps: int, lr: float = 3e-3) -> dict[str, torch.Tensor]:
    """`weights` (Meta's names and shapes for `params`) after `steps` AdamW steps on all of `texts` at once.

    Returns float32 tensors under the same names. Nothing is drawn at random (every step sees every
    text; LLaMA has no dropout), so the result depends on the weights given and nothing else.
    """
    if steps < 1:
        raise ValueError(f"steps={steps}: give at least one training step")
    tokens = token_batch(tokenizer, texts)
    args = ModelArgs.from_params(params, vocab_size=tokenizer.n_words, max_seq_len=tokens.shape[1])
    with on_meta_device():  # no random initialisation: every tensor comes from `weights`
        model = Transformer(args)  # adapter_layers 0, no bias, no LoRA: exactly Meta's tensors
    model.to_empty(device="cpu")  # the rotary tables are recomputed by Transformer._apply
    model.load_state_dict({key: value.float() for key, value in weights.items()}, strict=True)
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.0)
    for step in range(1, steps + 1):
        loss = next_token_loss(model, tokens)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if step in (1, steps):
            logger.info("language model step %d/%d: loss %.4f", step, steps, loss.item())
    return {key: value.detach() for key, value in model.state_dict().items()}
