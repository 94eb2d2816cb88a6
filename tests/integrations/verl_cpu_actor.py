"""Real verl 0.9 actor updates on CPU, in a world of one or more gloo processes.

    python tests/integrations/verl_cpu_actor.py WORKDIR [hydra overrides...]
        one update in one process; prints the update's metrics as JSON; verl's worker saves
        the checkpoint, Hugging Face model folder included, in WORKDIR/global_step_1/actor
    python tests/integrations/verl_cpu_actor.py WORKDIR --worlds 2,1 CASES.json
        every case of CASES.json ({name: [hydra overrides...]}) in a world of 2 processes,
        then in a world of 1 (torch.multiprocessing spawn, a fresh gloo group per world),
        each an off-policy update (old log-probs shifted by a fixed pattern); rank 0 writes
        WORKDIR/<name>-world<N>.safetensors (the updated weights, gathered from the shards)
        and WORKDIR/<name>-world<N>.json (the metrics verl logs)

verl's own ``ActorRolloutRefWorker`` (role "actor") builds its FSDP2 engine on a tiny Llama
(sharded across the processes), scores the old log-probs with ``compute_log_prob`` and runs
``update_actor``, whose loss is verl's ``ppo_loss`` calling the configured loss mode. Each
process holds its contiguous share of the global batch, as verl's driver splits a batch over
data-parallel ranks, and verl's worker itself reduces the metrics over them (the dict rank 0
returns is what verl's driver logs). Nothing in verl is patched; verl 0.9.1 needs five things
to run on a machine without an accelerator, all set up here:

1. a CPU platform: verl has none and falls back to CUDA (``verl.plugin.platform``); one is
   registered through verl's ``set_platform``;
2. ``VERL_ENGINE_DEVICE=cuda`` (set by the caller): verl registers its FSDP engine for
   cuda/npu only (``EngineRegistry.get_engine_cls``) and reads this variable to override
   the lookup;
3. a gloo process group started before verl's worker, which would ask for NCCL;
4. ``strategy=fsdp2``: FSDP1 is given an integer device id, i.e. an accelerator;
5. ``attn_implementation=sdpa``: verl defaults to flash-attention 2.

It runs in its own processes: they start torch.distributed and replace verl's platform.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import sys
import types

import torch
from safetensors.torch import load_file, save_file
from verl.plugin.platform.platform_base import PlatformBase

from maspo.testing import save_tiny_model

CPU_MEMORY_BYTES = 1 << 34  # reported by mem_get_info; only logged by verl


def _cpu_device_module() -> types.SimpleNamespace:
    """``torch.cpu`` plus the ``torch.cuda``-style calls verl makes (memory stats: zero)."""
    module = types.SimpleNamespace(**{k: getattr(torch.cpu, k) for k in dir(torch.cpu)
                                      if not k.startswith("__")})
    for name in ("max_memory_allocated", "max_memory_reserved", "memory_allocated",
                 "memory_reserved", "reset_peak_memory_stats"):
        setattr(module, name, lambda *args, **kwargs: 0)
    module.empty_cache = lambda: None
    module.mem_get_info = lambda *args: (CPU_MEMORY_BYTES, CPU_MEMORY_BYTES)
    module.get_device_name = lambda *args: "CPU"
    module.is_initialized = lambda: True
    module.manual_seed = module.manual_seed_all = torch.manual_seed
    module.get_rng_state, module.set_rng_state = torch.get_rng_state, torch.set_rng_state
    return module


class CpuPlatform(PlatformBase):
    """The platform verl 0.9.1 lacks: the host CPU, gloo, no device memory."""

    _module = _cpu_device_module()

    @property
    def device_name(self) -> str:
        return "cpu"

    @property
    def vendor_name(self) -> str:
        return "cpu"

    @property
    def device_module(self):
        return self._module

    def is_available(self) -> bool:
        return True

    def current_device(self):
        return "cpu"  # verl passes this to .to(device=...) and FSDP

    def device_count(self) -> int:
        return 1

    def set_device(self, device_index) -> None:
        pass

    def synchronize(self, device_index=None) -> None:
        pass

    def manual_seed(self, seed: int) -> None:
        torch.manual_seed(seed)

    def manual_seed_all(self, seed: int) -> None:
        torch.manual_seed(seed)

    def set_allocator_settings(self, settings: str) -> None:
        pass

    def empty_cache(self) -> None:
        pass

    def get_device_capability(self, device_index: int = 0):
        return (None, None)

    def communication_backend_name(self) -> str:
        return "gloo"

    def visible_devices_envvar(self) -> str:
        return "CUDA_VISIBLE_DEVICES"

    def nvtx_range(self, msg: str):
        return contextlib.nullcontext()

    def profiler_start(self) -> None:
        pass

    def profiler_stop(self) -> None:
        pass

    def ray_resource_name(self) -> str:
        return "CPU"

    def ray_noset_envvars(self) -> list[str]:
        return []

    def is_ipc_supported(self) -> bool:
        return False

    def cudart(self):
        return None


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _start_process_group(rank: int = 0, world: int = 1, port: int | None = None) -> None:
    """A gloo group of ``world`` local processes on ``port`` (default: a free one), with
    the environment verl's worker reads."""
    os.environ.update(RANK=str(rank), WORLD_SIZE=str(world), LOCAL_RANK=str(rank),
                      LOCAL_WORLD_SIZE=str(world), MASTER_ADDR="127.0.0.1",
                      MASTER_PORT=str(port or _free_port()))
    torch.distributed.init_process_group("gloo", rank=rank, world_size=world)


def batch():
    """2 prompts x 4 responses, left-padded prompts, ragged responses, both advantage signs."""
    g = torch.Generator().manual_seed(0)
    b, p, r = 8, 4, 5
    prompts = torch.randint(5, 60, (b, p), generator=g)  # (B, P)
    responses = torch.randint(5, 60, (b, r), generator=g)  # (B, R)
    prompt_mask = torch.ones(b, p, dtype=torch.long)
    prompt_mask[::2, 0] = 0
    lengths = torch.tensor([5, 3, 4, 5, 2, 5, 1, 4])
    response_mask = (torch.arange(r)[None] < lengths[:, None]).long()  # (B, R)
    attention = torch.cat([prompt_mask, response_mask], 1)
    tensors = {"prompts": prompts, "responses": responses,
               "input_ids": torch.cat([prompts, responses], 1), "attention_mask": attention,
               "position_ids": (attention.cumsum(1) - 1).clamp(min=0),
               "response_mask": response_mask}
    advantages = torch.tensor([1.0, -1.0, 0.5, -0.5, 1.0, -1.0, 0.5, -0.5])[:, None]
    return tensors, (advantages * response_mask).float()


# What the example launch script saves: verl's sharded state and the HF model folder.
SAVE_CONTENTS = ("actor_rollout_ref.actor.checkpoint.save_contents="
                 '["model","optimizer","extra","hf_model"]')
CHECKPOINT = os.path.join("global_step_1", "actor")  # as verl's trainer names a step's save
OLD_SHIFT = 0.4  # scale of the fixed shift of the old log-probs in an off-policy update


def old_shift(shape: torch.Size) -> torch.Tensor:
    """(B, R) fixed shifts of the old log-probs, the same whatever the world size."""
    return OLD_SHIFT * torch.randn(shape, generator=torch.Generator().manual_seed(1))


def update(model_dir: str, overrides: list[str], off_policy: bool = False,
           save_to: str | None = None) -> tuple[dict, dict[str, torch.Tensor]]:
    """One actor update of this process's share of ``batch()`` under ``overrides``:
    (the metrics verl's worker returns, the updated full weights by name). ``off_policy``
    shifts the old log-probs by a fixed pattern (OLD_SHIFT), as a reused rollout's are, so
    the ratio leaves 1 and the objective's gates and clips act. ``save_to``: then verl's
    worker saves its checkpoint there (as verl's trainer does at global_step_N/actor)."""
    import verl
    from hydra import compose, initialize_config_dir
    from verl import DataProto
    from verl.utils import tensordict_utils as tu
    from verl.workers.engine_workers import ActorRolloutRefWorker
    from verl.workers.utils.padding import left_right_2_no_padding, no_padding_2_padding

    config_dir = os.path.join(os.path.dirname(verl.__file__), "trainer", "config")
    world = torch.distributed.get_world_size()
    base = [f"actor_rollout_ref.model.path={model_dir}",
            "+actor_rollout_ref.model.override_config.attn_implementation=sdpa",
            "actor_rollout_ref.actor.strategy=fsdp2",
            "actor_rollout_ref.actor.policy_loss._target_="
            "maspo.integrations.verl.MaspoPolicyLossConfig",
            "actor_rollout_ref.actor.ppo_mini_batch_size=2",
            "actor_rollout_ref.actor.ppo_micro_batch_size_per_gpu=4",
            "actor_rollout_ref.actor.optim.lr=0.01",
            "actor_rollout_ref.rollout.n=4",
            "actor_rollout_ref.rollout.log_prob_micro_batch_size_per_gpu=4",
            f"trainer.n_gpus_per_node={world}", "trainer.nnodes=1", "trainer.device=cpu"]
    with initialize_config_dir(config_dir=config_dir, version_base=None):
        cfg = compose(config_name="ppo_trainer", overrides=base + overrides)
    worker = ActorRolloutRefWorker(config=cfg.actor_rollout_ref, role="actor")
    worker.init_model()

    tensors, advantages = batch()
    rows = advantages.shape[0]  # the global batch: one mini-batch of every row
    share = slice(rows * torch.distributed.get_rank() // world,
                  rows * (torch.distributed.get_rank() + 1) // world)
    shift = old_shift(advantages.shape)[share]  # (B / world, R)
    tensors, advantages = {k: v[share] for k, v in tensors.items()}, advantages[share]
    # verl's driver steps (RayPPOTrainer._compute_old_log_prob / _update_actor)
    data = DataProto.from_dict(tensors=tensors, meta_info={"temperature": 1.0})
    scored = left_right_2_no_padding(data.to_tensordict())
    tu.assign_non_tensor(scored, calculate_entropy=True, calculate_sum_pi_squared=False,
                         compute_loss=False)
    old = no_padding_2_padding(tu.get(worker.compute_log_prob(scored), "log_probs"), scored)
    if off_policy:
        old = old + shift * tensors["response_mask"]

    data = DataProto.from_dict(tensors={**tensors, "old_log_probs": old.float(),
                                        "advantages": advantages},
                               meta_info={"temperature": 1.0})
    updating = left_right_2_no_padding(data.to_tensordict())
    tu.assign_non_tensor(updating, calculate_entropy=False, distillation_use_topk=False,
                         distillation_only=False, global_batch_size=rows, mini_batch_size=rows,
                         epochs=1, seed=1, dataloader_kwargs={"shuffle": False},
                         compute_loss=True)
    metrics = tu.get(worker.update_actor(updating), "metrics")
    if save_to is not None:
        worker.save_checkpoint(save_to)
    weights = {name: p.detach().full_tensor().clone()  # a collective: every rank gathers
               for name, p in worker.actor.engine.module.named_parameters()}
    out = {k: [float(x) for x in v] if isinstance(v, list) else float(v)
           for k, v in metrics.items()}
    return out, weights


def main(workdir: str, overrides: list[str]) -> dict:
    from verl.plugin.platform.platform_manager import set_platform

    set_platform(CpuPlatform())
    _start_process_group()
    model_dir = str(save_tiny_model(os.path.join(workdir, "model")))
    before = {name: p.clone() for name, p in load_file(
        os.path.join(model_dir, "model.safetensors")).items()}
    out, after = update(model_dir, overrides + [SAVE_CONTENTS],
                        save_to=os.path.join(workdir, CHECKPOINT))
    moved = sum(not torch.equal(after[name], before[name]) for name in after if name in before)
    tensors, advantages = batch()
    out["_moved_params"] = moved
    out["_expected_unit_ratio_loss"] = float(-(advantages.sum() / tensors["response_mask"].sum()))
    torch.distributed.destroy_process_group()
    return out


def _run_cases(rank: int, worlds: list[int], ports: list[int], workdir: str,
               cases: dict[str, list[str]]) -> None:
    """Process ``rank``: every case in a world of each size in ``worlds`` it belongs to, one
    world after the other (see the module docstring)."""
    from verl.plugin.platform.platform_manager import set_platform

    set_platform(CpuPlatform())
    model_dir = os.path.join(workdir, "model")
    for world, port in zip(worlds, ports, strict=True):
        if rank >= world:
            continue
        _start_process_group(rank, world, port)
        for name, overrides in cases.items():
            metrics, weights = update(model_dir, overrides, off_policy=True)
            if rank == 0:
                save_file(weights, os.path.join(workdir, f"{name}-world{world}.safetensors"))
                with open(os.path.join(workdir, f"{name}-world{world}.json"), "w") as f:
                    json.dump(metrics, f)
        torch.distributed.destroy_process_group()


def run_worlds(workdir: str, worlds: list[int], cases: dict[str, list[str]]) -> None:
    """Every case in a world of each size in ``worlds``, in that order, by max(worlds)
    spawned processes (one start-up for all; the tiny model saved once)."""
    import torch.multiprocessing

    if not os.path.isdir(os.path.join(workdir, "model")):
        save_tiny_model(os.path.join(workdir, "model"))
    ports = [_free_port() for _ in worlds]
    torch.multiprocessing.spawn(_run_cases, args=(worlds, ports, workdir, cases),
                                nprocs=max(worlds))


if __name__ == "__main__":
    if len(sys.argv) > 2 and sys.argv[2] == "--worlds":
        with open(sys.argv[4]) as f:
            run_worlds(sys.argv[1], [int(n) for n in sys.argv[3].split(",")], json.load(f))
    else:
        print(json.dumps(main(sys.argv[1], sys.argv[2:])))
