"""engine/train_loop.py and its parts (parallel, running_stats, evaluate) on a toy model, CPU.

The facts: accumulated micro-batches give the step one large batch gives; the learning rate
follows the schedule at every step, also from a mid-epoch start; a non-finite loss stops with its
step named; an all-bad (empty) batch takes part with zero gradients, also under DDP where the
gradients travel once per optimizer step and the ranks stay equal.
"""

from __future__ import annotations

import json
import logging
import math

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import torch.nn.functional as F

from engine.errors import NonFiniteLossError, TrainingError
from engine.evaluate import validation_loss
from engine.parallel import TrainingModule, broadcast_trainables, check_trainables_agree
from engine.running_stats import RunningStats
from engine.train_loop import Position, Trainer
from support import free_port
from support.engine_doubles import ToyModel, empty_batch, make_trainer, run_epoch, toy_batch
from util.distributed import DistributedContext
from util.lr_schedule import learning_rate

CPU = torch.device("cpu")


def trainable_copy(model: ToyModel) -> dict[str, torch.Tensor]:
    return {name: param.detach().clone() for name, param in model.trainable_parameters().items()}


def test_accumulated_micro_batches_step_as_one_batch_of_their_samples():
    first, second = toy_batch(1), toy_batch(2)
    joined = {key: torch.cat([first[key], second[key]]) for key in ("tokens", "labels", "images", "has_image")}
    accumulated, single = ToyModel(), ToyModel()
    run_epoch(make_trainer(accumulated, accum_iter=2, epochs=1), [first, second], 2, Position(0, 0, 0))
    run_epoch(make_trainer(single, accum_iter=1, epochs=1), [joined], 1, Position(0, 0, 0))
    after_accumulated, after_single = trainable_copy(accumulated), trainable_copy(single)
    assert after_accumulated.keys() == after_single.keys()
    for name in after_single:
        torch.testing.assert_close(after_accumulated[name], after_single[name], rtol=0, atol=1e-6)
    assert not torch.equal(after_single["output.weight"], ToyModel().output.weight)  # the step did change them


def test_learning_rate_follows_the_schedule_at_every_step_also_from_mid_epoch():
    batches_in_epoch, warmup, peak = 4, 1.0, 0.05
    expected = [learning_rate(epoch + step / batches_in_epoch, peak, 0.0, warmup, 2)
                for epoch in range(2) for step in range(batches_in_epoch)]

    def lrs_of(trainer: Trainer, start: Position, epochs: range) -> list[float]:
        seen = []

        def record(position: Position) -> bool:
            seen.append(trainer.optimizer.param_groups[0]["lr"])
            return False

        for epoch in epochs:
            begin = start if epoch == start.epoch else Position(epoch, 0, 0)
            batches = [toy_batch(10 * epoch + i) for i in range(begin.step_in_epoch, batches_in_epoch)]
            stats = run_epoch(trainer, batches, batches_in_epoch, begin, record)
            seen.append(stats["lr"])  # the epoch's last step is not handed to between_steps
        return seen

    assert lrs_of(make_trainer(ToyModel(), warmup=warmup), Position(0, 0, 0), range(2)) == pytest.approx(expected, abs=0)
    resumed = lrs_of(make_trainer(ToyModel(), warmup=warmup), Position(0, 2, 2), range(2))
    assert resumed == pytest.approx(expected[2:], abs=0)


def test_a_non_finite_loss_stops_at_the_next_check_naming_its_step():
    model = ToyModel()
    model.nan_at_call = 2  # the third optimizer step (one micro-batch each)
    trainer = make_trainer(model, epochs=1)
    checked = []

    def save_every_step(position: Position) -> bool:
        trainer.verify_finite(position)  # what the run does before writing any checkpoint
        checked.append(position.global_step)
        return False

    with pytest.raises(NonFiniteLossError, match=r"optimizer step 3 of the run \(epoch 1, step 3 of the epoch\)"):
        run_epoch(trainer, [toy_batch(i) for i in range(6)], 6, Position(0, 0, 0), save_every_step)
    assert checked == [1, 2]  # nothing after the bad step was let through


def test_a_non_finite_loss_between_progress_lines_is_found_at_the_epoch_end():
    model = ToyModel()
    model.nan_at_call = 1
    trainer = make_trainer(model, epochs=1, print_freq=100)
    with pytest.raises(NonFiniteLossError, match="optimizer step 2 of the run"):
        run_epoch(trainer, [toy_batch(i) for i in range(4)], 4, Position(0, 0, 0))


def test_a_non_finite_trainable_value_is_refused_before_saving():
    model = ToyModel()
    trainer = make_trainer(model, epochs=1)

    def overflow_then_save(position: Position) -> bool:
        with torch.no_grad():
            model.output.weight[0, 0] = float("inf")
        trainer.verify_finite(position)
        return False

    with pytest.raises(NonFiniteLossError, match=r"non-finite values after optimizer step 1 of the run \(epoch 1, step 1"):
        run_epoch(trainer, [toy_batch(i) for i in range(3)], 3, Position(0, 0, 0), overflow_then_save)


def test_an_empty_batch_takes_a_step_with_zero_gradients():
    model = ToyModel()
    before = trainable_copy(model)
    trainer = make_trainer(model, epochs=1)
    positions = []

    def stop_after_first(position: Position) -> bool:
        positions.append(position)
        return True

    assert run_epoch(trainer, [empty_batch(), toy_batch(3)], 2, Position(0, 0, 0), stop_after_first) is None
    assert positions == [Position(0, 1, 1)]
    # AdamW's first step on zero gradients moves nothing (there is no weight decay here).
    for name, value in trainable_copy(model).items():
        assert torch.equal(value, before[name])


def test_bad_samples_are_summed_over_the_epoch_and_checked_at_its_end():
    checks = []
    trainer = make_trainer(ToyModel(), epochs=1, check=lambda skipped, seen, **kw: checks.append((skipped, seen, kw)))
    batches = [empty_batch({"missing_image": 2}), toy_batch(3, skipped={"unreadable_image": 1})]
    stats = run_epoch(trainer, batches, 2, Position(0, 0, 0))
    assert stats["samples"] == 2
    assert stats["bad_samples"] == {"missing_image": 2, "unreadable_image": 1}
    assert checks[-1] == ({"missing_image": 2, "unreadable_image": 1}, 5, {"min_seen": 0})
    assert checks[0] == ({"missing_image": 2}, 2, {})  # the first step's progress line checks too


def test_epoch_stats_and_progress_lines(caplog, tmp_path):
    model = ToyModel()
    losses = []
    original_forward = model.forward

    def recording_forward(*args):
        loss = original_forward(*args)
        losses.append(loss.item())
        return loss

    model.forward = recording_forward
    trainer = make_trainer(model, epochs=1, print_freq=2, step_loss_path=tmp_path / "steps.jsonl")
    with caplog.at_level(logging.INFO, logger="util.metrics"):
        stats = run_epoch(trainer, [toy_batch(i) for i in range(5)], 5, Position(0, 0, 0))
    assert stats["loss"] == pytest.approx(sum(losses) / len(losses), rel=1e-12)
    assert math.isfinite(stats["grad_norm"]) and stats["grad_norm"] > 0
    lines = [record.getMessage() for record in caplog.records if record.name == "util.metrics"]
    assert [line.split("  ")[0] for line in lines] == [f"epoch [1/1] step [{step}/5]" for step in (1, 2, 4, 5)]
    for part in ("loss", "lr", "grad_norm", "samples/s", "tokens/s", "data_wait", "eta_epoch", "eta_run"):
        assert part in lines[-1]
    recorded = [json.loads(line) for line in (tmp_path / "steps.jsonl").read_text().splitlines()]
    assert [record["global_step"] for record in recorded] == [1, 2, 3, 4, 5]
    assert [record["loss"] for record in recorded] == pytest.approx(losses, rel=1e-6)


def test_running_stats_state_round_trip_and_interval_reset():
    stats = RunningStats(CPU)
    stats.add_step(torch.tensor(3.0), 2, torch.tensor(1.5), global_step=1)
    stats.add_step(torch.tensor(1.0), 1, torch.tensor(float("inf")), global_step=2)  # a skipped fp16 step
    means, first_bad = stats.read_interval()
    assert means == {"loss": 4.0 / 3, "grad_norm": 1.5} and first_bad is None
    empty_interval, _ = stats.read_interval()
    assert empty_interval["loss"] == 0.0 and math.isnan(empty_interval["grad_norm"])
    stats.count_batch(toy_batch(0, skipped={"missing_image": 1}))
    restored = RunningStats(CPU)
    restored.load_state_dict(stats.state_dict())
    assert restored.read_epoch() == stats.read_epoch()
    assert (restored.samples, restored.seen, dict(restored.skipped)) == (2, 3, {"missing_image": 1})
    stats.add_step(torch.tensor(float("nan")), 1, torch.tensor(1.0), global_step=7)
    stats.add_step(torch.tensor(float("nan")), 1, torch.tensor(1.0), global_step=8)
    assert stats.first_non_finite_step() == 7


def test_training_module_gives_an_empty_batch_a_zero_loss_through_every_trainable():
    model = ToyModel()
    module = TrainingModule(model, list(model.trainable_parameters().values()))
    batch = empty_batch()
    loss = module(batch["tokens"], batch["labels"], batch["images"], batch["has_image"])
    loss.backward()
    assert loss.item() == 0.0
    for param in model.trainable_parameters().values():
        assert param.grad is not None and torch.count_nonzero(param.grad) == 0


def test_validation_loss_is_the_mean_over_answer_tokens_of_all_batches():
    model = ToyModel()
    short, long = toy_batch(1, batch_size=1, length=4), toy_batch(2, batch_size=3, length=10)
    batches = [short, empty_batch(), long]
    total, count = 0.0, 0
    with torch.no_grad():
        for batch in (short, long):
            hidden = model.embed(batch["tokens"]) + model.image_proj(batch["images"].mean(dim=(2, 3)))[:, None]
            logits = model.output(hidden)[:, :-1]
            targets = batch["labels"][:, 1:]
            mask = targets != 0
            total += F.cross_entropy(logits[mask], targets[mask], reduction="sum").item()
            count += int(mask.sum())
    assert validation_loss(model, batches, "fp32", DistributedContext()) == pytest.approx(total / count, rel=1e-6)
    assert model.training  # put back in training mode


# -- two processes (gloo) ------------------------------------------------------------------------------

def _ddp_worker(rank: int, port: int, results: dict) -> None:
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=2)
    try:
        torch.manual_seed(rank)  # different adapters at first: the broadcast must make them equal
        model = ToyModel(seed=rank)
        context = DistributedContext(rank=rank, world_size=2, distributed=True)
        broadcast_trainables(list(model.trainable_parameters().values()), context)
        trainer = make_trainer(model, accum_iter=2, epochs=1, context=context)
        reductions = []

        def counting_hook(state, bucket):
            reductions.append(1)
            work = dist.all_reduce(bucket.buffer().div_(2), async_op=True)
            return work.get_future().then(lambda fut: fut.value()[0])

        trainer.module.register_comm_hook(None, counting_hook)
        # Rank 1's first batch lost every sample; the ranks must still step together.
        batches = [empty_batch() if rank == 1 else toy_batch(100), toy_batch(101 + rank),
                   toy_batch(200 + rank), toy_batch(300 + rank)]
        stats = run_epoch(trainer, batches, 4, Position(0, 0, 0))
        flat = torch.cat([p.detach().flatten() for p in model.trainable_parameters().values()])
        gathered = [torch.zeros_like(flat) for _ in range(2)]
        dist.all_gather(gathered, flat)
        params = list(model.trainable_parameters().values())
        check_trainables_agree(params, context)  # passes: they are equal
        with torch.no_grad():
            params[0].add_(rank * 1e-6)
        try:
            check_trainables_agree(params, context)
            drift_found = ""
        except TrainingError as error:
            drift_found = str(error)
        results[rank] = {"equal": torch.equal(gathered[0], gathered[1]), "reductions": len(reductions),
                         "bad": stats["bad_samples"], "samples": stats["samples"], "drift": drift_found}
    finally:
        dist.destroy_process_group()


def test_two_ranks_stay_equal_with_one_all_reduce_per_step_and_an_empty_batch(monkeypatch):
    results = mp.Manager().dict()
    monkeypatch.setenv("OMP_NUM_THREADS", "1")  # the spawned ranks inherit it; later tests do not
    mp.spawn(_ddp_worker, args=(free_port(), results), nprocs=2, join=True)
    for rank in range(2):
        assert results[rank]["equal"]
        assert results[rank]["reductions"] == 2  # 4 micro-batches, accum_iter 2: two optimizer steps
        assert results[rank]["bad"] == {"missing_image": 2}  # summed over ranks, the same on both
        assert results[rank]["samples"] == 14  # 2 x 4 batches of 2, less rank 1's empty one
        assert "rank(s) [1] differ from rank 0's" in results[rank]["drift"]
