"""`--gpus N`: how many GPUs a job trains on, and how N trainer processes are started.

    check_gpus(n)                 1, 2, 4 or 8, else one line naming the fix
    torchrun_args(n)              `-m torch.distributed.run ... -m jobs.htr`: N processes here
    local_device(n, gpu, cuda)    the local provider's choice: N GPUs, or N CPU processes

N > 1 runs the trainer under torchrun, one process per GPU (DDP: NCCL on GPUs, gloo on CPUs);
rank 0 writes the events, checkpoints and the model (jobs/htr/train.py). A SIGTERM to torchrun
(the spot notice, `gpuhire stop`) reaches every rank; the ranks agree to stop at the same step
and rank 0 writes the one checkpoint. A checkpoint is not tied to the number of processes: a
job resumes with the same N or another.

The local provider (docs/train.md, "Several GPUs"): on a machine with CUDA GPUs, N of them (one
clear line when it has fewer); with `--gpu cpu`, or on a machine without a CUDA GPU, N gloo
processes on the CPU: for trying the multi-GPU path and for tests, not for speed (they share
the same cores).
"""

from __future__ import annotations

from launcher.errors import InputError

GPU_COUNTS = (1, 2, 4, 8)


def check_gpus(n: int, flag: str = "--gpus") -> int:
    """`n` when --gpus accepts it; InputError naming the values otherwise."""
    if n not in GPU_COUNTS:
        raise InputError(f"{flag} {n} is not a GPU count gpuhire rents",
                         "use --gpus 1, 2, 4 or 8 (AWS boxes: T4 4 or 8, L4 4 or 8)")
    return n


def torchrun_args(n: int) -> list[str]:
    """The interpreter arguments that start N trainer processes on this machine under torchrun
    (`--standalone`: its rendezvous on a free local port, so two jobs never collide)."""
    return ["-m", "torch.distributed.run", "--standalone", "--nnodes", "1", "--nproc-per-node",
            str(n), "-m", "jobs.htr"]


def local_device(n: int, gpu: str, cuda_devices: int) -> str:
    """What N local trainer processes run on: `cuda` (one GPU each) or `cpu` (gloo processes).

    `gpu` is what the job records (--gpu / [local] gpu); `cuda_devices` what this machine has.
    One process keeps the trainer's own choice (`auto`)."""
    if n == 1:
        return "auto"
    if gpu.lower() == "cpu" or cuda_devices == 0:
        return "cpu"  # asked for the CPU, or there is no GPU: N gloo processes share the cores
    if cuda_devices < n:
        raise InputError(f"--gpus {n}: this machine has {cuda_devices} CUDA GPU(s)",
                         f"pass --gpus {max(c for c in GPU_COUNTS if c <= cuda_devices)} or fewer, "
                         "or --gpu cpu for CPU processes")
    return "cuda"
