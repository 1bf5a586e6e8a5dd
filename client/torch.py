"""``RemoteScheduler``: a ``torch.optim.lr_scheduler.LRScheduler`` whose values come from an lrserve run.

The only module of ``lrserve.client`` that imports torch. Two lines change in a training loop::

    run = LRClient("http://lrserve:8000", token=...).run("job-42", spec=spec)
    scheduler = RemoteScheduler(optimizer, run)          # instead of OneCycleLR(optimizer, ...)

Like torch's schedulers it writes step 0's values into ``optimizer.param_groups`` at construction and advances
one step per ``step()``: the value at step s is what the server's curve shows at s (what torch's own scheduler
gives after s calls of ``step()``). It writes each group's ``lr`` and, when the schedule cycles momentum,
``momentum`` (SGD, RMSprop) or ``betas[0]`` (Adam-like). ``step(metric)`` also reports ``metric`` under the
run's plateau metric at the current step, so code written for ``ReduceLROnPlateau`` keeps working.

Distributed (``torch.distributed`` initialized, world size > 1), ``distributed="auto"`` (the default) means
rank 0 talks to the server and broadcasts each window of W steps as one float64 tensor (one collective per W
steps, at the same step on every rank); other ranks never call HTTP, every rank applies identical values by
construction, and metrics are reported once (by rank 0; other ranks' values are ignored — reduce them first if
they differ). ``distributed="every_rank"`` lets each rank talk to the server itself (the server's frozen steps
keep them consistent while it is reachable; during an outage each rank evaluates its own cached plan).
"""

from __future__ import annotations

import logging
import os
import uuid
from collections.abc import Callable
from typing import Any, Literal

import numpy as np
import torch
import torch.distributed as dist
from torch.optim import Optimizer
from torch.optim.lr_scheduler import LRScheduler

from lrserve.client.http import RunHandle
from lrserve.client.lease import LeaseManager, Window, is_fatal
from lrserve.schemas import errors as lrserve_errors

log = logging.getLogger("lrserve.client")

Distributed = Literal["auto", "rank0", "every_rank", "off"]
_HEADER = 9  # status, start, count, incarnation, last_seq, revision, local, has_momentum, done


def restart_key(step: int) -> str | None:
    """A key naming this launch of the job, shared by all its ranks (torchelastic, SLURM), or None."""
    run_id = os.environ.get("TORCHELASTIC_RUN_ID")
    if run_id:
        return f"elastic:{run_id}:{os.environ.get('TORCHELASTIC_RESTART_COUNT', '0')}:{step}"
    job = os.environ.get("SLURM_JOB_ID")
    if job:
        return f"slurm:{job}:{os.environ.get('SLURM_RESTART_COUNT', '0')}:{step}"
    return None


class _Direct:
    """This process talks to the server itself."""

    def __init__(self, manager: LeaseManager) -> None:
        self.manager: LeaseManager | None = manager

    def first(self, step: int, check: Callable[[LeaseManager], None]) -> Window:
        assert self.manager is not None
        window = self.manager.start(step)
        check(self.manager)
        return window

    def next(self, start: int) -> Window:
        assert self.manager is not None
        return self.manager.next(start)

    def prefetch(self, start: int) -> None:
        assert self.manager is not None
        self.manager.prefetch(start)

    def resume(self, step: int, key: str | None) -> Window:
        assert self.manager is not None
        return self.manager.resume(step, key)

    def shared_key(self, key: str | None) -> str | None:
        return key


class _Broadcast:
    """Rank 0 talks to the server (``manager``); every rank receives each window in one broadcast tensor."""

    def __init__(self, manager: LeaseManager | None, num_groups: int, lease_steps: int, group: Any) -> None:
        self.manager = manager
        self.num_groups = num_groups
        self.lease_steps = lease_steps
        self.group = group
        backend = str(dist.get_backend(group))
        self.device = torch.device("cuda", torch.cuda.current_device()) if "nccl" in backend else torch.device("cpu")
        self.size = _HEADER + 2 * num_groups * lease_steps

    def _exchange(self, produce: Callable[[], Window] | None) -> Window:
        buf = torch.zeros(self.size, dtype=torch.float64)
        error: BaseException | None = None
        if self.manager is not None:
            assert produce is not None
            try:
                window = produce()
            except Exception as e:
                error = e
                buf[0] = 1.0
            else:
                self._pack(buf, window)
        dev = buf.to(self.device)
        dist.broadcast(dev, src=0, group=self.group)
        buf = dev.cpu() if dev.device.type != "cpu" else dev
        if buf[0].item() != 0.0:
            message = [None if error is None else (type(error).__name__, str(error))]
            dist.broadcast_object_list(message, src=0, group=self.group, device=self.device)
            if error is not None:
                raise error
            name, text = message[0]  # type: ignore[misc]
            cls = getattr(lrserve_errors, name, None)
            if isinstance(cls, type) and issubclass(cls, lrserve_errors.LrserveError):
                raise cls(detail=f"(on rank 0) {text}")
            if name == "ValueError":
                raise ValueError(f"(on rank 0) {text}")
            raise RuntimeError(f"lrserve: rank 0 failed: {name}: {text}")
        return self._unpack(buf)

    def _pack(self, buf: torch.Tensor, w: Window) -> None:
        g, n = w.lr.shape
        has_mom = w.momentum is not None
        buf[1:_HEADER] = torch.tensor(
            [w.start, n, w.incarnation, w.last_seq, w.revision, float(w.local), float(has_mom), float(w.done)],
            dtype=torch.float64,
        )
        k = g * n
        buf[_HEADER : _HEADER + k] = torch.from_numpy(np.ascontiguousarray(w.lr).reshape(-1))
        if w.momentum is not None:
            off = _HEADER + self.num_groups * self.lease_steps
            buf[off : off + k] = torch.from_numpy(np.ascontiguousarray(w.momentum).reshape(-1))

    def _unpack(self, buf: torch.Tensor) -> Window:
        head = buf[:_HEADER].tolist()
        n = int(head[2])
        g = self.num_groups
        arr = buf.numpy()
        lr = arr[_HEADER : _HEADER + g * n].reshape(g, n).copy()
        momentum = None
        if head[7]:
            off = _HEADER + g * self.lease_steps
            momentum = arr[off : off + g * n].reshape(g, n).copy()
        return Window(
            start=int(head[1]),
            lr=lr,
            momentum=momentum,
            incarnation=int(head[3]),
            last_seq=int(head[4]),
            revision=int(head[5]),
            local=bool(head[6]),
            done=bool(head[8]),
        )

    def first(self, step: int, check: Callable[[LeaseManager], None]) -> Window:
        def produce() -> Window:
            assert self.manager is not None
            window = self.manager.start(step)
            check(self.manager)
            return window

        return self._exchange(produce if self.manager is not None else None)

    def next(self, start: int) -> Window:
        m = self.manager
        return self._exchange((lambda: m.next(start)) if m is not None else None)

    def prefetch(self, start: int) -> None:
        if self.manager is not None:
            self.manager.prefetch(start)

    def resume(self, step: int, key: str | None) -> Window:
        m = self.manager
        return self._exchange((lambda: m.resume(step, key)) if m is not None else None)

    def shared_key(self, key: str | None) -> str | None:
        return key  # only rank 0 sends it


class RemoteScheduler(LRScheduler):
    """An LR scheduler driven by an lrserve run (see the module's docstring).

    ``run``: a ``RunHandle`` (``LRClient(...).run(run_id, spec=...)``). Param groups are matched to the run's
    groups by order; a count mismatch raises ``ValueError`` here. Lease and outage settings are those of
    ``LeaseManager``: leases of at least ``lease_steps=128`` steps, grown (up to ``max_lease_steps``) to last
    ``lease_seconds=0.25`` s at the measured step rate; ``lease_steps=1, lease_seconds=None`` gives
    ReduceLROnPlateau's exact timing at one request per ``step()`` (fine when stepping per epoch).
    ``resume_key``: the idempotency key of a resume (default: derived from TORCHELASTIC_RUN_ID/SLURM_JOB_ID and
    their restart counts, else random).
    """

    def __init__(
        self,
        optimizer: Optimizer,
        run: RunHandle,
        *,
        lease_steps: int = 128,
        lease_seconds: float | None = 0.25,
        max_lease_steps: int = 4096,
        refill_at: int | None = None,
        refill_budget: float = 2.0,
        retry_for: float = 10.0,
        start_timeout: float = 60.0,
        flush_every: float = 10.0,
        metric_name: str | None = None,
        distributed: Distributed = "auto",
        process_group: Any = None,
        resume_key: str | None = None,
    ) -> None:
        if not isinstance(optimizer, Optimizer):
            raise TypeError(f"{type(optimizer).__name__} is not an Optimizer")
        self.optimizer = optimizer
        self.run = run
        self.lease_steps = lease_steps
        self._resume_key = resume_key
        groups = optimizer.param_groups
        for group in groups:
            group.setdefault("initial_lr", group["lr"])
        self.base_lrs = [group["initial_lr"] for group in groups]
        self._tensor_lr = any(isinstance(g["lr"], torch.Tensor) for g in groups)
        self._warned_no_momentum = False

        mode = distributed
        world = dist.get_world_size(process_group) if dist.is_available() and dist.is_initialized() else 1
        if mode == "auto":
            mode = "rank0" if world > 1 else "off"
        self.rank = dist.get_rank(process_group) if world > 1 else 0
        self.world_size = world
        self.distributed = mode

        broadcast = mode == "rank0" and world > 1

        def make_manager() -> LeaseManager:
            return LeaseManager(
                run,
                lease_steps=lease_steps,
                # Broadcast windows have a fixed size on every rank: leases do not grow there.
                lease_seconds=None if broadcast else lease_seconds,
                max_lease_steps=max_lease_steps,
                refill_at=refill_at,
                refill_budget=refill_budget,
                retry_for=retry_for,
                start_timeout=start_timeout,
                flush_every=flush_every,
                metric_name=metric_name,
            )

        if broadcast:
            self._source: _Direct | _Broadcast = _Broadcast(
                make_manager() if self.rank == 0 else None, len(groups), lease_steps, process_group
            )
        else:
            self._source = _Direct(make_manager())
        self._reports = self.rank == 0  # metrics are reported once per job
        self._process_group = process_group
        self._refill_at_cfg = refill_at

        self.last_epoch = 0
        self._step_count = 1
        self._get_lr_called_within_step = False
        self._install(self._source.first(0, self._check_groups))
        self._apply(0)

    # ---- torch's API --------------------------------------------------------------------------------------------

    def step(self, metrics: Any = None, epoch: int | None = None) -> None:  # type: ignore[override]
        """Advance one step (``metrics``: a plateau metric of the current step, reported before advancing)."""
        if epoch is not None:
            raise TypeError("RemoteScheduler.step(epoch=...) is not supported: call step() once per step")
        if metrics is not None:
            self.report(metrics)
        s = self.last_epoch + 1
        i = s - self._win_start
        if i >= self._win_count:
            self._install(self._source.next(s))
            i = 0
        elif i == self._refill_idx:
            self._source.prefetch(self._win_start + self._win_count)
        self.last_epoch = s
        self._step_count += 1
        self._apply(i)

    def get_last_lr(self) -> list[float | torch.Tensor]:
        return self._last_lr

    def get_lr(self) -> list[float | torch.Tensor]:
        return list(self._last_lr)

    def state_dict(self) -> dict[str, Any]:
        manager = self.manager
        return {
            "last_epoch": self.last_epoch,
            "_step_count": self._step_count,
            "_last_lr": list(self._last_lr),
            "base_lrs": list(self.base_lrs),
            "run_id": self.run.run_id,
            "incarnation": manager.incarnation if manager is not None else self._incarnation,
        }

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Resume at the checkpoint's step: a new incarnation on the server, and that step's values written back
        into ``param_groups`` (torch's own schedulers leave them as the optimizer's state had them)."""
        run_id = state_dict.get("run_id")
        if run_id is not None and run_id != self.run.run_id:
            raise ValueError(f"this state is of run {run_id!r}; the scheduler drives run {self.run.run_id!r}")
        self.resume(int(state_dict["last_epoch"]))
        self._step_count = int(state_dict.get("_step_count", self.last_epoch + 1))

    # ---- lrserve's additions ------------------------------------------------------------------------------------

    @property
    def manager(self) -> LeaseManager | None:
        """The lease engine of this process (None on ranks other than 0 in the default distributed mode)."""
        return self._source.manager

    def resume(self, step: int) -> None:
        """Declare a restart at ``step`` (the next step to train) and apply that step's values."""
        key = self._resume_key_for(step)
        self._install(self._source.resume(step, key))
        self.last_epoch = step
        self._apply(0)

    def report(self, value: Any, name: str | None = None, step: int | None = None) -> None:
        """Queue a metric of the current step (default name: the run's plateau metric)."""
        if not self._reports:
            return
        v = float(value.item() if isinstance(value, torch.Tensor) else value)
        manager = self.manager
        assert manager is not None
        manager.report(self.last_epoch if step is None else step, v, name)

    def flush(self, timeout: float | None = None) -> bool:
        """Send queued metrics now (rank 0 / every process talking to the server); True when all went."""
        manager = self.manager
        return True if manager is None or not self._reports else manager.flush(timeout)

    def close(self, timeout: float = 10.0) -> None:
        """Deliver what is queued and stop the background thread (also done at interpreter exit)."""
        manager = self.manager
        if manager is not None:
            manager.close(timeout)

    # ---- internals ----------------------------------------------------------------------------------------------

    def _check_groups(self, manager: LeaseManager) -> None:
        names = manager.group_names
        if len(names) != len(self.optimizer.param_groups):
            raise ValueError(
                f"the optimizer has {len(self.optimizer.param_groups)} param group(s) but run "
                f"{self.run.run_id!r} defines {len(names)} ({', '.join(names)}); groups are matched by order, "
                "so give the run one param_groups entry per optimizer group"
            )

    def _resume_key_for(self, step: int) -> str | None:
        if self._resume_key is not None:
            return f"{self._resume_key}:{step}"
        key = restart_key(step)
        if key is not None:
            return key
        if self.distributed == "every_rank" and self.world_size > 1:
            box = [uuid.uuid4().hex if self.rank == 0 else None]
            dist.broadcast_object_list(box, src=0, group=self._process_group)
            return f"uuid:{box[0]}:{step}"
        return f"uuid:{uuid.uuid4().hex}:{step}"

    def _install(self, window: Window) -> None:
        self._win_start = window.start
        self._win_count = window.count
        self._refill_idx = window.count // 2 if self._refill_at_cfg is None else self._refill_at_cfg
        self._incarnation = window.incarnation
        self._lr_rows, self._mom_rows = window.rows
        self.window = window

    def _apply(self, i: int) -> None:
        row: list[Any] = self._lr_rows[i]
        groups = self.optimizer.param_groups  # looked up each time: optimizer.load_state_dict replaces the dicts
        if self._tensor_lr:
            for group, v in zip(groups, row, strict=True):
                if isinstance(group["lr"], torch.Tensor):
                    group["lr"].fill_(v)
                else:
                    group["lr"] = v
        else:
            for group, v in zip(groups, row, strict=True):
                group["lr"] = v
        moms = self._mom_rows
        if moms is not None:
            for group, m in zip(groups, moms[i], strict=True):
                if m is None:
                    continue
                if "betas" in group:
                    group["betas"] = (m, group["betas"][1])
                elif "momentum" in group:
                    group["momentum"] = m
                elif not self._warned_no_momentum:
                    self._warned_no_momentum = True
                    log.warning(
                        "lrserve: the schedule cycles momentum but a param group has neither 'momentum' "
                        "nor 'betas'; only its lr is set"
                    )
        self._last_lr = row


__all__ = ["RemoteScheduler", "is_fatal", "restart_key"]
