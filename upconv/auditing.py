"""Checkpoints' transposed-convolution layers: choosing them, their strides, auditing and
fixing them (``upconv kernel audit`` and ``upconv kernel fix``).

A ``state_dict`` records weights, not strides or paddings, nor which 4-D tensors
are ``ConvTranspose2d`` weights (``C_in x C_out x kH x kW``) rather than
``Conv2d`` ones (``C_out x C_in x kH x kW``). So an audit looks at every 4-D
parameter named ``weight`` (``*.weight``, which leaves out an optimizer's state)
with a kernel of at least 2 x 2 unless ``--layer`` patterns choose; a fix, which
changes weights, only touches the layers ``--layer`` names. Each
layer's stride is given (``--stride N`` for all, ``--stride PATTERN=N`` per
layer, the last matching one winning) or guessed from its kernel size
(:func:`upconv.layers.guess_stride`: ``K = 2s`` or ``2s - 1``), and then shown as
guessed. The figures are :mod:`upconv.layers`'.
"""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass

import numpy as np

from .checkpoints import tensor_named, tensors_matching
from .errors import BadInputError
from .layers import LayerFigures, fix_checkerboard, guess_stride, layer_figures

__all__ = ["LayerAudit", "LayerFix", "parse_strides", "choose_layers", "audit", "fix_layers"]


@dataclass(frozen=True)
class LayerAudit:
    """One layer's audit: its name, weight shape, stride (and whether it was guessed)."""

    name: str
    shape: tuple[int, ...]
    stride: int
    stride_guessed: bool
    figures: LayerFigures
    #: PyTorch's padding, or "centred", when the file records it (a kernel file); a
    #: state_dict does not (None)
    padding: int | tuple[int, int] | str | None = None

    def as_dict(self) -> dict:
        return {"layer": self.name, "shape": list(self.shape), "stride": self.stride,
                "stride_guessed": self.stride_guessed, "padding": self.padding,
                **self.figures.as_dict()}


@dataclass(frozen=True)
class LayerFix:
    """What :func:`fix_layers` did to one layer: the figures before and after, and the
    relative change of its weights, ``||W' - W||_F / ||W||_F``."""

    name: str
    stride: int
    stride_guessed: bool
    before: LayerFigures
    after: LayerFigures
    relative_change: float

    def as_dict(self) -> dict:
        return {"layer": self.name, "stride": self.stride, "stride_guessed": self.stride_guessed,
                "checkerboard_percent_before": self.before.figure,
                "checkerboard_percent_after": self.after.figure,
                "relative_weight_change": self.relative_change}


def parse_strides(options: tuple[str, ...] | list[str]) -> list[tuple[str, int]]:
    """``--stride`` values as ``(pattern, stride)``: ``"2"`` applies to every layer
    (pattern ``*``), ``"dec.up1.*=4"`` to the layers matching the pattern.

    Examples
    --------
    >>> parse_strides(["2", "up3.*=4"])
    [('*', 2), ('up3.*', 4)]
    """
    parsed = []
    for option in options:
        pattern, _, value = option.rpartition("=") if "=" in option else ("*", "", option)
        try:
            stride = int(value)
        except ValueError:
            raise BadInputError(f"--stride {option!r}: give N or PATTERN=N with N a whole "
                                "number") from None
        if stride < 2 or not pattern:
            raise BadInputError(f"--stride {option!r}: a transposed convolution's stride is "
                                "a whole number >= 2 (PATTERN=N for one layer)")
        parsed.append((pattern, stride))
    return parsed


def choose_layers(tensors: dict[str, np.ndarray], patterns: tuple[str, ...] | list[str],
                  name: str) -> dict[str, np.ndarray]:
    """The layers to audit: the tensors matching any of ``patterns`` (globs, or names taken
    as ``FILE:KEY`` takes them: exact or an unambiguous ending; each must match something,
    and each match must be 4-D), or every 4-D parameter named ``weight`` or ``*.weight``
    with a kernel of at least 2 x 2."""
    if not patterns:
        chosen = {key: value for key, value in tensors.items()
                  if value.ndim == 4 and min(value.shape[2:]) >= 2
                  and (key == "weight" or key.endswith(".weight"))}
        if not chosen:
            shapes = ", ".join(f"{key} {list(value.shape)}" for key, value in
                               list(tensors.items())[:6])
            raise BadInputError(f"{name}: no 4-D (C_in x C_out x kH x kW) weights with a "
                                f"kernel of at least 2 x 2 (it has: {shapes}); choose "
                                "tensors with --layer")
        return chosen
    chosen = {}
    for pattern in patterns:
        if any(wild in pattern for wild in "*?["):
            chosen.update(tensors_matching(tensors, pattern, name))
        else:  # a name: exact, or its unambiguous ending (as FILE:KEY takes it)
            value = tensor_named(tensors, pattern, name)
            chosen.update({key: value for key, found in tensors.items() if found is value})
    for key, value in chosen.items():
        if value.ndim != 4:
            raise BadInputError(f"{name}: {key} has shape {list(value.shape)}; a "
                                "ConvTranspose2d weight is 4-D (C_in x C_out x kH x kW)")
    return {key: chosen[key] for key in tensors if key in chosen}  # in file order


def _stride(key: str, shape: tuple[int, ...], strides: list[tuple[str, int]],
            recorded: int | None) -> tuple[int, bool]:
    """A layer's stride and whether it was guessed: the last ``--stride`` matching it, else
    the one its file records, else a guess."""
    given = [stride for pattern, stride in strides if fnmatch.fnmatchcase(key, pattern)]
    if given:
        return given[-1], False
    if recorded is not None:
        return recorded, False
    return guess_stride(min(shape[-2:])), True


def audit(tensors: dict[str, np.ndarray], layers: tuple[str, ...] | list[str] = (),
          strides: tuple[str, ...] | list[str] = (), name: str = "checkpoint",
          recorded: dict[str, tuple[int | None, int | tuple[int, int] | str]] | None = None
          ) -> list[LayerAudit]:
    """The checkerboard figures of a checkpoint's transposed-convolution layers.

    Parameters
    ----------
    tensors : dict
        Name to array, as :func:`upconv.checkpoints.load_tensors` returns.
    layers : sequence of str
        Glob patterns choosing the layers (default: every 4-D tensor, see
        :func:`choose_layers`).
    strides : sequence of str
        ``"N"`` or ``"PATTERN=N"`` (see :func:`parse_strides`); others are guessed.
    name : str
        The file, for messages.
    recorded : dict, optional
        ``(stride, padding)`` per layer where the file records them (a kernel
        file does; a state_dict does not).

    Examples
    --------
    >>> from upconv.layers import bilinear_init
    >>> rows = audit({"up.weight": bilinear_init(2, 2, 4, 2), "up.bias": np.zeros(2)})
    >>> [(r.name, r.stride, r.stride_guessed, r.figures.figure) for r in rows]
    [('up.weight', 2, True, 0.0)]
    """
    parsed = parse_strides(strides)
    recorded = recorded or {}
    rows = []
    for key, weights in choose_layers(tensors, layers, name).items():
        known_stride, padding = recorded.get(key, (None, None))
        stride, guessed = _stride(key, weights.shape, parsed, known_stride)
        if min(weights.shape[2:]) < stride:
            raise BadInputError(f"{name}: {key}'s {weights.shape[2]}x{weights.shape[3]} kernel "
                                f"is smaller than its stride {stride}")
        rows.append(LayerAudit(key, tuple(weights.shape), stride, guessed,
                               layer_figures(weights, stride), padding))
    return rows


def fix_layers(tensors: dict[str, np.ndarray], layers: tuple[str, ...] | list[str] = (),
               strides: tuple[str, ...] | list[str] = (), name: str = "checkpoint",
               recorded: dict[str, tuple[int | None, int | tuple[int, int] | str]] | None
               = None) -> tuple[dict[str, np.ndarray], list[LayerFix]]:
    """Every chosen layer replaced by its nearest checkerboard-free weights
    (:func:`upconv.layers.fix_checkerboard`), every other tensor unchanged.

    ``layers`` must name the layers (a state_dict does not say which 4-D tensors
    are transposed convolutions, and a fix changes them). Returns the new
    tensors (same keys, order and dtypes) and what was done to each layer.

    Examples
    --------
    >>> fixed, done = fix_layers({"up.weight": np.ones((1, 1, 3, 3))}, ["up.*"], ["2"])
    >>> round(done[0].before.figure, 1), done[0].after.figure
    (72.6, 0.0)
    """
    if not layers:
        raise BadInputError(f"{name}: say which tensors are ConvTranspose2d weights with "
                            "--layer (a fix changes them; a Conv2d weight or an optimizer's "
                            "state must not be)")
    audited = audit(tensors, layers, strides, name, recorded)
    result = dict(tensors)
    done = []
    for row in audited:
        weights = tensors[row.name]
        fixed = fix_checkerboard(weights, row.stride)
        norm = float(np.linalg.norm(weights.astype(np.float64)))
        change = float(np.linalg.norm(fixed.astype(np.float64) - weights)) / norm if norm else 0.0
        result[row.name] = fixed
        done.append(LayerFix(row.name, row.stride, row.stride_guessed, row.figures,
                             layer_figures(fixed, row.stride), change))
    return result, done
