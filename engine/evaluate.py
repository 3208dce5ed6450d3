"""The loss on held-out data (--val_data_config), logged after every epoch.

The mean is over answer tokens of the whole held-out set, on all ranks together: each batch's
mean loss is weighted by its number of answer tokens, so the result does not depend on how the
samples fell into batches or ranks.
"""

from __future__ import annotations

from typing import Iterable

import torch
from torch import nn

from engine.data_source import batch_to_device
from engine.precision import autocast
from model.tokenizer import NO_LOSS_LABEL
from util.distributed import DistributedContext, all_reduce_mean


@torch.no_grad()
def validation_loss(model: nn.Module, batches: Iterable[dict], precision: str, context: DistributedContext) -> float:
    """Mean loss per answer token over `batches` on every rank; NaN when there is no answer token."""
    was_training = model.training
    model.eval()
    loss_sum = torch.zeros((), dtype=torch.float64, device=context.device)  # loss x answer tokens
    count = 0  # answer tokens, counted on the host
    for batch in batches:
        if batch["tokens"].shape[0] == 0:
            continue
        tokens, labels, images, has_image = batch_to_device(batch, context.device)
        with autocast(context.device, precision):
            loss = model(tokens, labels, images, has_image)
        answer_tokens = int((labels[:, 1:] != NO_LOSS_LABEL).sum())  # labels on the host; position t predicts label t+1
        loss_sum += loss.double() * answer_tokens
        count += answer_tokens
    model.train(was_training)
    totals = all_reduce_mean({"loss_sum": loss_sum.item(), "count": count}, context)
    return totals["loss_sum"] / totals["count"] if totals["count"] else float("nan")
