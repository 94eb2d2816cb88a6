"""TRL's GRPOTrainer and MaspoGRPOTrainer trained in a world of CPU processes (gloo):

    python -m torch.distributed.run --nproc_per_node 2 tests/integrations/trl_two_process.py OUT

Under torchrun every process finds RANK / WORLD_SIZE / MASTER_ADDR in its environment, and
accelerate (inside TRL's Trainer, ``use_cpu=True``) starts a gloo process group from them:
a MULTI_CPU world, data-parallel, as ``accelerate launch`` on CPU gives.

Every run starts from the same tiny Llama and samples the same rollouts (same seed), then
makes 2 optimizer steps of 2 accumulated micro-batches on one generation batch reused twice
(``num_iterations=2``), so the second step is off-policy and the clip acts. The optimizer is
plain SGD: the weights then differ by the learning rate times the gradient difference (Adam's
first step, g / |g|, would turn a rounding difference in a near-zero gradient into a full step).

Runs: for every ``loss_type`` of MaspoGRPOTrainer, TRL's GRPOTrainer (its PPO clip,
epsilon 0.2 / epsilon_high 0.28) and MaspoGRPOTrainer(objective="grpo") with the same bounds
and no dual clip; then MaspoGRPOTrainer(objective="maspo"). Rank 0 writes
``OUT/<run>.safetensors`` (the trained weights) and ``OUT/<run>.json`` (the log history);
every rank writes ``OUT/<run>-rank<r>.json``: the maspo metrics it computed itself, per call.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import torch
import torch.distributed as dist
from datasets import Dataset
from safetensors.torch import save_file
from transformers import LlamaForCausalLM
from trl import GRPOConfig, GRPOTrainer
from trl_tiny import liked_chars, tiny_config, tiny_tokenizer

from maspo.integrations.trl import NORMALISATIONS, MaspoGRPOTrainer

TRL_CLIP = {"epsilon": 0.2, "epsilon_high": 0.28}  # TRL's PPO clip, no dual clip (delta None)
MASPO_CLIP = {"clip_low": 0.2, "clip_high": 0.28, "dual_clip": None}  # the same, in maspo


class RecordingMaspoTrainer(MaspoGRPOTrainer):
    """MaspoGRPOTrainer that also keeps the metrics each call computed on this process
    (before they are reduced over processes), to check the logged reduction against."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.local_metrics: list[dict[str, float]] = []

    def _log_loss_metrics(self, mode, metrics, entropies, per_token_kl, mask):
        self.local_metrics.append({k: float(v) for k, v in metrics.items()})
        super()._log_loss_metrics(mode, metrics, entropies, per_token_kl, mask)


def args(out: Path, run: str, **settings) -> GRPOConfig:
    return GRPOConfig(output_dir=str(out / run), per_device_train_batch_size=4,
                      gradient_accumulation_steps=2, num_generations=4,
                      max_completion_length=8, num_iterations=2, max_steps=2,
                      learning_rate=0.5, optim="sgd", lr_scheduler_type="constant",
                      logging_steps=1, report_to="none", use_cpu=True, save_strategy="no",
                      seed=0, disable_tqdm=True, **settings)


def train(out: Path, run: str, cls, settings: dict, **kwargs) -> None:
    torch.manual_seed(0)  # the same initial weights in every run and on every process
    model = LlamaForCausalLM(tiny_config())
    dataset = Dataset.from_dict({"prompt": ["ab", "cd", "ef", "gh"] * 2})
    trainer = cls(model, liked_chars, args(out, run, **settings), train_dataset=dataset,
                  processing_class=tiny_tokenizer(), **kwargs)
    trainer.train()
    rank = dist.get_rank()
    local = getattr(trainer, "local_metrics", [])
    (out / f"{run}-rank{rank}.json").write_text(json.dumps(local))
    if rank == 0:
        weights = {k: v.detach().contiguous() for k, v in trainer.model.state_dict().items()}
        save_file(weights, out / f"{run}.safetensors")
        history = {"world": dist.get_world_size(), "log": trainer.state.log_history,
                   "distributed": trainer.accelerator.distributed_type.value,
                   "backend": dist.get_backend()}
        (out / f"{run}.json").write_text(json.dumps(history))
    dist.barrier()


def main(out: Path) -> None:
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    for loss_type in NORMALISATIONS:
        train(out, f"trl-{loss_type}", GRPOTrainer, {"loss_type": loss_type, **TRL_CLIP})
        train(out, f"maspo-grpo-{loss_type}", MaspoGRPOTrainer, {"loss_type": loss_type},
              objective="grpo", objective_params=MASPO_CLIP)
    train(out, "maspo-maspo", RecordingMaspoTrainer, {"loss_type": "dapo"},
          objective="maspo", objective_params={"alpha": 0.5})


if __name__ == "__main__":
    main(Path(sys.argv[1]))
