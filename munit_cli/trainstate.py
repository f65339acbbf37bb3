"""Training-state files: the discriminators and both optimizers, what resuming a run needs beyond
its generator file (`checkpoint`). They are written and checked the same way: safetensors with the
resolved config, the domain names, a format version and a checksum, and nothing ever unpickles.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import torch

from munit_cli.checkpoint import (
    FORMAT_VERSION,
    STATE_KIND,
    load_state_dict_checked,
    parse_metadata,
    read_tensors,
    save_tensors,
)
from munit_cli.errors import MunitError, first_line


def _flatten_optimizer(prefix: str, opt: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor], str]:
    sd = opt.state_dict()
    tensors = {}
    for pid, state in sd["state"].items():
        for key, value in state.items():
            t = value if torch.is_tensor(value) else torch.tensor(value)
            tensors[f"{prefix}.state.{pid}.{key}"] = t
    return tensors, json.dumps(sd["param_groups"])


def _unflatten_optimizer(prefix: str, tensors: dict[str, torch.Tensor], groups_json: str) -> dict:
    state: dict[int, dict[str, torch.Tensor]] = {}
    head = f"{prefix}.state."
    for key, value in tensors.items():
        if key.startswith(head):
            pid, name = key[len(head) :].split(".", 1)
            state.setdefault(int(pid), {})[name] = value
    return {"state": state, "param_groups": json.loads(groups_json)}


def save_state(
    path: Path, dis: torch.nn.Module, opt_gen, opt_dis, cfg, names, step: int, extra: dict[str, Any]
) -> None:
    tensors = {f"dis.{k}": v for k, v in dis.state_dict().items()}
    gen_opt, gen_groups = _flatten_optimizer("opt_gen", opt_gen)
    dis_opt, dis_groups = _flatten_optimizer("opt_dis", opt_dis)
    tensors.update(gen_opt)
    tensors.update(dis_opt)
    metadata = {
        "format": STATE_KIND,
        "format_version": FORMAT_VERSION,
        "config": cfg.to_json(),
        "names": json.dumps(list(names)),
        "step": str(step),
        "opt_gen.param_groups": gen_groups,
        "opt_dis.param_groups": dis_groups,
        "extra": json.dumps(extra),
    }
    save_tensors(path, tensors, metadata)


def load_state(path: Path, dis: torch.nn.Module, opt_gen, opt_dis, read=None) -> dict[str, Any]:
    """Restore discriminators and both optimizers; returns {'step', 'extra'}. Every value is
    checked against what the live optimizers hold before it is used (a forged file with a valid
    checksum must not crash the first step). No random state is restored: training draws every
    random number from generators seeded by (seed, step); files of older versions hold RNG
    states, which are ignored.
    `read`: the file's (tensors, metadata) when the caller has already read and verified it."""
    tensors, metadata = read or read_tensors(path, STATE_KIND)
    _, _, step = parse_metadata(path, metadata)
    dis_tensors = {k.removeprefix("dis."): v for k, v in tensors.items() if k.startswith("dis.")}
    load_state_dict_checked(dis, dis_tensors, path)
    try:
        for prefix, opt in (("opt_gen", opt_gen), ("opt_dis", opt_dis)):
            saved = _unflatten_optimizer(prefix, tensors, metadata[f"{prefix}.param_groups"])
            _check_optimizer_state(opt, saved)
            opt.load_state_dict(saved)
            _lay_out_like_parameters(opt)
        extra = json.loads(metadata.get("extra", "{}"))
        if not isinstance(extra, dict):
            raise ValueError("extra is not a table")
    except (KeyError, ValueError, TypeError, RuntimeError, RecursionError) as exc:
        raise MunitError(f"{path}: broken training state ({first_line(exc)})") from None
    return {"step": step, "extra": extra}


def _lay_out_like_parameters(opt: torch.optim.Optimizer) -> None:
    """Give each loaded moment its parameter's memory layout. The file holds them contiguous, and
    the fused Adam kernel pairs elements by memory position: moments of a channels_last parameter
    left contiguous would update it from the wrong elements after a resume."""
    for group in opt.param_groups:
        for param in group["params"]:
            state = opt.state.get(param, {})
            for key, value in state.items():
                if value.shape == param.shape:
                    state[key] = torch.empty_like(param, dtype=value.dtype).copy_(value)


def _same_kind(saved: Any, live: Any) -> bool:
    """Whether a saved optimizer setting is the kind of value the live optimizer holds there:
    flags stay flags (or unset), numbers stay finite numbers, tuples keep their length."""
    if live is None or isinstance(live, bool):
        return saved is None or isinstance(saved, bool)
    if isinstance(live, (int, float)):
        return isinstance(saved, (int, float)) and not isinstance(saved, bool) and math.isfinite(saved)
    if isinstance(live, (list, tuple)):
        return isinstance(saved, list) and len(saved) == len(live) and all(map(_same_kind, saved, live))
    return type(saved) is type(live)


def _check_optimizer_state(opt: torch.optim.Optimizer, saved: dict) -> None:
    """Raise ValueError unless `saved` has the layout of `opt.state_dict()`: the same groups and
    parameters, settings of the same kinds, and moments shaped like their parameters."""
    live = opt.state_dict()
    groups = saved["param_groups"]
    if not (isinstance(groups, list) and len(groups) == len(live["param_groups"])):
        raise ValueError("param_groups do not match this optimizer")
    for group, live_group in zip(groups, live["param_groups"]):
        if not isinstance(group, dict) or group.get("params") != live_group["params"]:
            raise ValueError("param_groups hold other parameters")
        for key, value in group.items():
            if key != "params" and (key not in live_group or not _same_kind(value, live_group[key])):
                raise ValueError(f"optimizer setting {key!r} = {str(value)[:40]!r} is not valid")
    shapes = {
        pid: p.shape
        for group, live_group in zip(opt.param_groups, live["param_groups"])
        for pid, p in zip(live_group["params"], group["params"])
    }
    for pid, state in saved["state"].items():
        if pid not in shapes or set(state) != {"step", "exp_avg", "exp_avg_sq"}:
            raise ValueError(f"optimizer state of parameter {pid} is not Adam's")
        if state["step"].numel() != 1 or not state["exp_avg"].shape == state["exp_avg_sq"].shape == shapes[pid]:
            raise ValueError(f"optimizer state of parameter {pid} does not fit it")
        if not all(v.is_floating_point() and bool(torch.isfinite(v).all()) for v in state.values()):
            raise ValueError(f"optimizer state of parameter {pid} is not finite")
