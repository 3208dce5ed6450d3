"""ImageBind-LLM: a frozen ImageBind and a frozen LLaMA joined by a bridge and gated prefix tokens.

    image --ImageBind (frozen)--> embedding [B, E] --normalise, weight--> bridge --> visual [B, 1, dim]
    per adapted layer l:  prefix_l = visual + prefix_query.weight[l]   (not normed, as the reference)
    layer l's attention:  each head's output += tanh(gate_l[h]) * wv(prefix_l)[h]

The bridge is `image_bind_proj` (Linear(E, dim)) followed by three residual SwiGLU blocks
x + f2(silu(f1(norm(x))) * f3(norm(x))) of width 4*dim. All names are fixed by the released
checkpoints (see model/layout.py for which tensors each phase trains and which a file holds).
The arithmetic follows the published code exactly, also where it is redundant (ImageBind's
output is normalised again; modality weights are divided by their sum plus 1e-6): the released
weights were trained on it.
"""

from __future__ import annotations

import contextlib
import logging
from dataclasses import replace
from pathlib import Path
from typing import Any, Iterator, Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from model.generation import continuations_of, stream_tokens
from model.imagebind import ImageBindModel, imagebind_huge
from model.layout import (
    BRIDGE_BLOCKS, BRIDGE_MODULES, PREFIX_MODULE, check_phase, released_state_dict, trainable_parameters,
)
from model.llama import ModelArgs, RMSNorm, Transformer
from model.tokenizer import IMAGE_SIZE, NO_LOSS_LABEL, Tokenizer
from model.visual_cache import VisualCache, load_visual_cache

logger = logging.getLogger(__name__)

# The bridge's norms use RMSNorm's own default eps, not params.json's norm_eps (as the reference).
BRIDGE_NORM_EPS = 1e-6
# Added to the sum of the modality weights before dividing by it (the reference's arithmetic).
MODALITY_WEIGHT_EPS = 1e-6


def llama_args_for_phase(args: ModelArgs, phase: str, tokenizer: Tokenizer | None = None) -> ModelArgs:
    """The LLaMA arguments ImageBind-LLM builds for `phase`, as the reference does.

    Fine-tuning adds biases and LoRA, pre-training neither (whatever `args` says: the phase
    decides, and the released files follow that rule). adapter_layers 0 means every layer.
    vocab_size -1 becomes the tokenizer's size.
    """
    check_phase(phase)
    vocab_size = args.vocab_size
    if vocab_size == -1:
        if tokenizer is None:
            raise ValueError("ModelArgs.vocab_size is -1 and no tokenizer was given: pass tokenizer=, or set vocab_size")
        vocab_size = tokenizer.n_words
    finetune = phase == "finetune"
    if (args.w_bias, args.w_lora) != (finetune, finetune):  # params.json never says: the phase decides
        logger.debug("phase %s: LLaMA with w_bias=%s, w_lora=%s (the arguments said %s, %s)",
                     phase, finetune, finetune, args.w_bias, args.w_lora)
    return replace(args, w_bias=finetune, w_lora=finetune, vocab_size=vocab_size,
                   adapter_layers=args.adapter_layers or args.n_layers)


def host_to_device(tensor: torch.Tensor, device: torch.device) -> torch.Tensor:
    """A small tensor (indices, a mask) on `device`, without the host waiting: a CPU one is staged
    in pinned memory on its way to a GPU, so that the copy is only queued."""
    if tensor.device.type == "cpu" and device.type == "cuda":
        tensor = tensor.pin_memory()
    return tensor.to(device, non_blocking=True)


def answer_loss(hidden: torch.Tensor, labels: torch.Tensor, output: nn.Linear) -> torch.Tensor:
    """Mean next-token cross-entropy over the positions whose (shifted) label is not 0.

    hidden: final-normed states [B, S, dim]; labels [B, S] (0 = no loss). With no answer position
    the loss is exactly 0 and still depends on every trainable tensor used (so that backward and
    DDP see them all). Which positions count is never read back from the device:

    - labels on the CPU (the engine leaves them where the collate made them): the answer positions
      are found on the host and only their rows go through the vocabulary head (gathered_answer_loss);
    - labels on another device: every position goes through the head and the loss is masked
      (masked_answer_loss): more head FLOPs, but fixed shapes (CUDA graphs).
    """
    if labels.device.type == "cpu":
        return gathered_answer_loss(hidden, labels, output)
    return masked_answer_loss(hidden, labels, output)


def gathered_answer_loss(hidden: torch.Tensor, labels: torch.Tensor, output: nn.Linear) -> torch.Tensor:
    """answer_loss with CPU labels: vocabulary logits for the answer positions only."""
    batch, seq, dim = hidden.shape
    is_answer = labels[:, 1:] != NO_LOSS_LABEL  # [B, S - 1]: position t predicts label t + 1
    rows, cols = is_answer.nonzero(as_tuple=True)
    answers = rows.numel()  # known on the host: nothing to read from the device
    # Row b * S + t of hidden viewed as [B * S, dim] is the state that predicts label (b, t + 1).
    positions = host_to_device(rows * seq + cols, hidden.device)
    targets = host_to_device(labels[:, 1:][is_answer], hidden.device)
    logits = output(hidden.reshape(batch * seq, dim).index_select(0, positions)).float()  # [answers, vocab]
    # A sum over the answers divided by their count (at least 1) is the mean, and exactly 0 without any.
    return F.cross_entropy(logits, targets, reduction="sum") / max(answers, 1)


def masked_answer_loss(hidden: torch.Tensor, labels: torch.Tensor, output: nn.Linear) -> torch.Tensor:
    """answer_loss over every position, the others masked out: no shape depends on the labels."""
    targets = labels[:, 1:]
    logits = output(hidden[:, :-1]).float()  # [B, S - 1, vocab]
    total = F.cross_entropy(logits.flatten(0, 1), targets.flatten(), ignore_index=NO_LOSS_LABEL, reduction="sum")
    return total / (targets != NO_LOSS_LABEL).sum().clamp(min=1)


class _ZeroImageEmbeddings:
    """ImageBind's embedding of an all-zero image, computed once per (shape, device, precision).

    Text-only samples get this embedding (the reference feeds them a zero image). It depends only
    on the encoder's weights, so it is forgotten whenever they are loaded again.
    """

    def __init__(self):
        self.by_key: dict[tuple, torch.Tensor] = {}

    def clear(self, *_hook_args: Any) -> None:
        self.by_key.clear()


class ImageBindLLM(nn.Module):
    """The published ImageBind-LLM (its `LLaMA_adapter`), for one training phase.

    `phase` "pretrain" or "finetune" decides LLaMA's biases and LoRA (llama_args_for_phase) and
    which tensors train (model/layout.py): those are float32 with requires_grad. Every other
    tensor is frozen, in `frozen_dtype`, except the released layout's (float32: checkpoints ship
    them). With a reduced frozen_dtype the model runs under autocast to that dtype (it enters
    autocast itself unless the caller already has). `imagebind_args`: None for ImageBind-Huge,
    else ImageBindModel's keyword arguments. Random weights; build on the meta device and load
    files with model/files/build.py.
    """

    def __init__(self, llama_args: ModelArgs, phase: str, imagebind_args: Mapping[str, Any] | None = None,
                 tokenizer: Tokenizer | None = None, frozen_dtype: torch.dtype = torch.float32):
        super().__init__()
        llama_args = llama_args_for_phase(llama_args, phase, tokenizer)
        self.phase = phase
        self.frozen_dtype = frozen_dtype
        self.tokenizer = tokenizer
        self.imagebind_args = None if imagebind_args is None else dict(imagebind_args)

        self.image_bind = imagebind_huge() if imagebind_args is None else ImageBindModel(**imagebind_args)
        dim = llama_args.dim
        self.image_bind_proj = nn.Linear(self.image_bind.out_embed_dim, dim)
        for block in range(1, BRIDGE_BLOCKS + 1):
            self.add_module(f"image_bind_norm_{block}", RMSNorm(dim, eps=BRIDGE_NORM_EPS))
            self.add_module(f"image_bind_f1_{block}", nn.Linear(dim, 4 * dim, bias=False))
            self.add_module(f"image_bind_f2_{block}", nn.Linear(4 * dim, dim, bias=False))
            self.add_module(f"image_bind_f3_{block}", nn.Linear(dim, 4 * dim, bias=False))
        self.llama = Transformer(llama_args)
        self.prefix_query = nn.Embedding(llama_args.adapter_layers, dim)  # one token per adapted layer

        self._zero_images = _ZeroImageEmbeddings()
        self.visual_cache: VisualCache | None = None  # inference only (use_visual_cache); not in the state dict
        self.image_bind.register_load_state_dict_post_hook(self._zero_images.clear)
        self._set_trainability()
        self.image_bind.eval()

    # -- tensors: trainability, initialisation, the released layout --------------------------------

    def _set_trainability(self) -> None:
        trainable = trainable_parameters(self, self.phase)
        released = released_state_dict(self)
        for name, param in self.named_parameters():
            param.requires_grad_(name in trainable)
            # What a checkpoint ships stays float32 whether this phase trains it or not: fine-tuning
            # must not round the pre-trained bridge it saves again (the reference keeps it float32).
            keep_float32 = name in trainable or name in released
            param.data = param.data.to(torch.float32 if keep_float32 else self.frozen_dtype)
        for buffer in self.image_bind.buffers():
            if buffer.is_floating_point():
                buffer.data = buffer.data.to(self.frozen_dtype)

    def trainable_parameters(self) -> dict[str, nn.Parameter]:
        """The tensors this phase trains, by name (the optimizer's parameters)."""
        return trainable_parameters(self, self.phase)

    def state_dict_released(self) -> dict[str, torch.Tensor]:
        """The released layout (`{'model': this}` is a 7B-pretrained.pth / 7B.pth style file)."""
        return released_state_dict(self)

    def reset_adapter_parameters(self) -> None:
        """(Re)initialise every tensor that the LLaMA and ImageBind files do not hold, as the
        reference does: nn.Linear / nn.Embedding defaults for the bridge and prefix_query, ones for
        the bridge norms, zeros for gates and biases, LoRA as in model/llama.py."""
        with torch.no_grad():
            for name in BRIDGE_MODULES + (PREFIX_MODULE,):
                getattr(self, name).reset_parameters()
            self.llama.init_added_parameters()

    def forget_cached_embeddings(self) -> None:
        """Drop the cached zero-image embedding (load_state_dict does this by itself)."""
        self._zero_images.clear()

    def train(self, mode: bool = True) -> ImageBindLLM:
        super().train(mode)
        self.image_bind.eval()  # frozen: no dropout or drop-path, in either phase
        return self

    def precision(self, device: torch.device | str) -> contextlib.AbstractContextManager:
        """Autocast to frozen_dtype when the frozen weights are reduced and autocast is not on yet."""
        device_type = torch.device(device).type
        if self.frozen_dtype == torch.float32 or torch.is_autocast_enabled(device_type):
            return contextlib.nullcontext()
        return torch.autocast(device_type, dtype=self.frozen_dtype)

    # -- the visual path -------------------------------------------------------------------------

    def encode(self, modality: str, x: torch.Tensor) -> torch.Tensor:
        """The frozen encoder's embedding [B, E] of one modality, without gradients."""
        with torch.no_grad():
            return self.image_bind({modality: x})[modality]

    def zero_image_embedding(self, image_shape: Sequence[int], device: torch.device) -> torch.Tensor:
        """[1, E]: ImageBind's embedding of one all-zero image of `image_shape` ([3, H, W])."""
        # inference-mode tensors cannot enter a training graph: cache them apart
        key = (tuple(image_shape), torch.device(device), next(self.image_bind.parameters()).dtype,
               torch.is_autocast_enabled(torch.device(device).type), torch.is_inference_mode_enabled())
        if key not in self._zero_images.by_key:
            zeros = torch.zeros((1, *image_shape), device=device)
            self._zero_images.by_key[key] = self.encode("vision", zeros)
        return self._zero_images.by_key[key]

    def image_embeddings(self, images: torch.Tensor, has_image: torch.Tensor | None = None) -> torch.Tensor:
        """[B, E] ImageBind embeddings of a batch's images.

        `images`: pixels [B, 3, H, W] or precomputed embeddings [B, E] (the encoder's output, as
        `encode("vision", pixels)` gives it). Rows whose `has_image` is False get the zero image's
        embedding; the encoder runs only on the rows that have an image, on the whole batch
        at once when they all do. `has_image` may stay on the CPU (the engine leaves it where the
        collate made it): choosing the rows then reads nothing from the device.
        """
        if images.ndim == 2:
            if images.shape[1] != self.image_bind.out_embed_dim:
                raise ValueError(f"image embeddings have width {images.shape[1]}; this ImageBind gives "
                                 f"{self.image_bind.out_embed_dim}")
            if has_image is None:
                return images
            zero = self.zero_image_embedding((3, IMAGE_SIZE, IMAGE_SIZE), images.device)
            return torch.where(host_to_device(has_image, images.device)[:, None], images, zero.to(images.dtype))
        if has_image is None:
            return self.encode("vision", images)
        rows = has_image.nonzero().squeeze(1)  # a device mask waits for the device here; a CPU one does not
        if rows.numel() == images.shape[0]:
            return self.encode("vision", images)
        zero = self.zero_image_embedding(images.shape[1:], images.device)
        embeddings = zero.expand(images.shape[0], -1).clone()
        if rows.numel():
            rows = host_to_device(rows, images.device)
            embeddings.index_copy_(0, rows, self.encode("vision", images.index_select(0, rows)).to(embeddings.dtype))
        return embeddings

    def bridge(self, x: torch.Tensor) -> torch.Tensor:
        """[B, 1, E] -> [B, 1, dim]: image_bind_proj, then the three residual SwiGLU blocks."""
        x = self.image_bind_proj(x)
        for block in range(1, BRIDGE_BLOCKS + 1):
            norm, f1, f2, f3 = (getattr(self, f"image_bind_{part}_{block}") for part in ("norm", "f1", "f2", "f3"))
            h = norm(x)
            x = x + f2(F.silu(f1(h)) * f3(h))
        return x

    @staticmethod
    def fuse(weighted_embeddings: Sequence[tuple[torch.Tensor, float]]) -> torch.Tensor:
        """[B, E]: the embeddings normalised and weighted by weight / (sum of weights), summed (the reference)."""
        total = sum(weight for _, weight in weighted_embeddings) + MODALITY_WEIGHT_EPS
        return sum(F.normalize(emb, dim=-1) * (weight / total) for emb, weight in weighted_embeddings)

    def visual_tokens(self, weighted_embeddings: Sequence[tuple[torch.Tensor, float]]) -> torch.Tensor:
        """[B, 1, dim] from (ImageBind embedding [B, E], weight) pairs, fused as the reference does."""
        return self.bridge(self.fuse(weighted_embeddings).unsqueeze(1))

    def use_visual_cache(self, cache: VisualCache | str | Path | None, **settings: Any) -> ImageBindLLM:
        """Mix inference embeddings with a cache of image embeddings (model/visual_cache.py), or stop (None)."""
        self.visual_cache = load_visual_cache(cache, **settings) if isinstance(cache, (str, Path)) else cache
        return self

    def forward_visual(self, inputs: Mapping[str, tuple[torch.Tensor, float]]) -> torch.Tensor:
        """[B, 1, dim] from {'Image': [pixels, weight], 'Audio': [x, weight], ...} (the reference's call).

        'Image' and 'Video' go to ImageBind's vision branch; other names are lower-cased. With a
        visual cache (use_visual_cache), the fused embedding is mixed with its nearest cached ones.
        """
        weighted = []
        for name, (value, weight) in inputs.items():
            modality = "vision" if name in ("Image", "Video") else name.lower()
            weighted.append((self.encode(modality, value), weight))
        fused = self.fuse(weighted)
        if self.visual_cache is not None:
            fused = self.visual_cache.mix(fused).to(fused.dtype)
        return self.bridge(fused.unsqueeze(1))

    def prefixes(self, visual: torch.Tensor) -> torch.Tensor:
        """[adapter_layers, B, 1, dim]: the visual token plus each adapted layer's prefix_query row."""
        return visual.unsqueeze(0) + self.prefix_query.weight[:, None, None, :]

    # -- training and inference ------------------------------------------------------------------

    def forward(self, tokens: torch.Tensor, labels: torch.Tensor, images: torch.Tensor,
                has_image: torch.Tensor | None = None) -> torch.Tensor:
        """The training loss (see answer_loss): tokens, labels [B, S]; images as image_embeddings."""
        with self.precision(tokens.device):
            return answer_loss(self.hidden_states(tokens, images, has_image), labels, self.llama.output)

    def hidden_states(self, tokens: torch.Tensor, images: torch.Tensor, has_image: torch.Tensor | None = None) -> torch.Tensor:
        """LLaMA's final-normed states [B, S, dim] for tokens [B, S] with the images' prefix tokens
        (what forward computes before its loss; the caller sets the precision)."""
        visual = self.visual_tokens([(self.image_embeddings(images, has_image), 1)])
        return self.llama.hidden_states(tokens, prefixes=self.prefixes(visual))

    @torch.inference_mode()
    def generate(self, inputs: Mapping[str, tuple[torch.Tensor, float]] | None, prompts: Sequence[str | Sequence[int]],
                 max_gen_len: int = 256, temperature: float = 0.1, top_p: float = 0.75) -> list[str]:
        """Decoded continuations of `prompts` (strings, encoded with bos, or token lists).

        `inputs` as forward_visual (one sample, or one per prompt); None means no image (the
        zero image, as text-only fine-tuning samples). temperature 0 is greedy. Each prompt's
        continuation ends before its own end-of-sequence token.
        """
        continuations = self.generate_ids(inputs, prompts, max_gen_len, temperature, top_p)
        return [self.tokenizer.decode(ids) for ids in continuations]

    @torch.inference_mode()
    def generate_ids(self, inputs: Mapping[str, tuple[torch.Tensor, float]] | None,
                     prompts: Sequence[str | Sequence[int]], max_gen_len: int = 256, temperature: float = 0.1,
                     top_p: float = 0.75) -> list[list[int]]:
        """As generate, but the continuations' token ids: stream_ids consumed to the end."""
        return continuations_of(self.stream_ids(inputs, prompts, max_gen_len, temperature, top_p), len(prompts))

    @torch.inference_mode()
    def stream_ids(self, inputs: Mapping[str, tuple[torch.Tensor, float]] | None,
                   prompts: Sequence[str | Sequence[int]], max_gen_len: int = 256, temperature: float = 0.1,
                   top_p: float = 0.75) -> Iterator[list[int | None]]:
        """As generate_ids, one decoding step at a time: after each step, the token each prompt's
        continuation gained, or None (model/generation.stream_tokens). Stop early by closing it."""
        if self.tokenizer is None:
            raise ValueError("generation needs the model's tokenizer: build ImageBindLLM with tokenizer=")
        prompt_ids = [self.tokenizer.encode(p, bos=True, eos=False) if isinstance(p, str) else list(p) for p in prompts]
        device = self.llama.tok_embeddings.weight.device
        # The precision is entered around each computation, not across the yields: an autocast left
        # on while the caller runs between two tokens would change the caller's arithmetic.
        with self.precision(device):
            if inputs is None:
                zero = self.zero_image_embedding((3, IMAGE_SIZE, IMAGE_SIZE), device)
                visual = self.visual_tokens([(zero, 1)])
            else:
                visual = self.forward_visual(inputs)
            if visual.shape[0] not in (1, len(prompt_ids)):
                raise ValueError(f"{visual.shape[0]} visual inputs for {len(prompt_ids)} prompts: give one, or one per prompt")
            prefixes = self.prefixes(visual.expand(len(prompt_ids), -1, -1))
        longest = max(len(p) for p in prompt_ids)
        caches = self.llama.new_kv_caches(len(prompt_ids), min(self.llama.args.max_seq_len, longest + max_gen_len))

        def step(chunk: torch.Tensor, start_pos: int) -> torch.Tensor:
            with self.precision(device):
                return self.llama.last_logits(chunk, start_pos, prefixes, caches)

        yield from stream_tokens(step, prompt_ids, max_gen_len, self.llama.args.max_seq_len,
                                 self.tokenizer.eos_id, temperature, top_p, device)
