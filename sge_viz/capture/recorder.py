"""Recording SGE gates with forward hooks.

    with GateRecorder(model) as rec:
        logits = model(x)
    captures = rec.captures   # {"layer1.0.sge": LayerCapture(gate, before, after, ...), ...}

Hooks only read tensors, so the model's output is bit-identical with and
without a recorder. Each recorder keeps what it captured on itself and only
records forwards run inside its own ``with`` block on its own thread (a
ContextVar marks the active recorder), so concurrent requests on one shared
model never see each other's gates.

Which modules: every module ``models.sge.sge_groups`` recognises (the official
SGE, its copies, re-implementations with (G,) parameters or a functional
sigmoid), plus any named by fnmatch patterns. The gate is the sigmoid output the
module computes (a hook on this project's module's ``sig`` child, else a
per-thread torch function mode catching every sigmoid call inside the module), checked on every call against the
module's own output: y = x * gate per group and position on every channel, through
the group sums (y's must be the gate times x's), else the module is
reported in ``skipped`` and never drawn.

Cost: the hooks keep what they capture on the model's device and in its dtype;
everything moves to the CPU as float32 once, when the ``with`` block closes
(one device sync instead of one per layer on a GPU). Since y = x * a with a
constant over each group's channels (checked), the output's group sums are the
gate times the input's, and its squared vector lengths the gate squared times
the input's, so only the input is reduced.
"""
from __future__ import annotations

import fnmatch
import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import torch
from torch import nn
from torch.overrides import TorchFunctionMode

from ..errors import SGEVizError
from ..models.sge import SpatialGroupEnhance, is_sge_module, looks_like_sge, sge_groups
from .hooks import HookScope


@dataclass
class LayerCapture:
    """One SGE layer's gate and group activation maps, each (B, G, H, W) float32 on the CPU
    once the recorder has closed."""

    gate: torch.Tensor
    before: torch.Tensor | None = None  # sum over each group's channels, input of SGE
    after: torch.Tensor | None = None  # the same for SGE's output
    before_sq: torch.Tensor | None = None  # sum of squares over each group's channels (vector length^2), input
    after_sq: torch.Tensor | None = None  # the same for SGE's output
    channels: int = 0  # C, SGE's channel count (each group holds C / G of them); 0 when activations are off


SHARED = "="  # joins the paths of one module registered under several: "neck.p3_att=neck.p4_att"


def find_sge_layers(model: nn.Module, patterns: Sequence[str] = ()) -> list[tuple[str, nn.Module]]:
    """(name, module) of every SGE layer, in registration order: the modules ``sge_groups`` recognises by
    structure, plus those with a path that matches one of ``patterns`` (fnmatch, e.g. ``"decoder.*.attn"``).
    The name is the module's path; a module registered under several paths (one instance shared by two
    places) is named by all of them joined with "=", since a call cannot tell which place it ran for.
    Raises SGEVizError for a pattern that matches no module."""
    # One walk: every module once, in registration order, with every path it is registered under.
    found: dict[int, tuple[nn.Module, list[str]]] = {}
    for name, m in model.named_modules(remove_duplicate=False):
        if name:
            found.setdefault(id(m), (m, []))[1].append(name)
    for pattern in patterns:
        if not any(fnmatch.fnmatchcase(path, pattern) for _, paths in found.values() for path in paths):
            shown = ", ".join(paths[0] for _, paths in list(found.values())[:8])
            raise SGEVizError(f"--sge-layers pattern {pattern!r} matches no module of the model (its modules "
                              f"are named like: {shown} ...); print the model to see the names.")
    return [(SHARED.join(paths), m) for m, paths in found.values()
            if is_sge_module(m) or any(fnmatch.fnmatchcase(path, p) for path in paths for p in patterns)]


def first_path(name: str) -> str:
    """The first module path of a layer name (``find_sge_layers``), without a call suffix (``#2``)."""
    return name.split(SHARED)[0].split("#")[0]


def shared_notes(layers: Sequence[tuple[str, nn.Module]]) -> list[str]:
    """One note per layer registered under several paths, saying what its name and call numbers mean."""
    return [f"{name}: one module registered under {name.count(SHARED) + 1} paths ({', '.join(name.split(SHARED))}); "
            f"each call is its own entry ({name}, {name}#2, ... in call order), and which path a call ran for "
            "cannot be told from the module" for name, _ in layers if SHARED in name]


def uncaptured_sge_like(model: nn.Module, patterns: Sequence[str] = ()) -> list[str]:
    """Paths of modules whose class name says SGE / SpatialGroup but that are not captured (neither
    recognised by structure nor matched by ``patterns``): the user should name them with --sge-layers."""
    captured = {id(m) for _, m in find_sge_layers(model, patterns)}
    return [name for name, m in model.named_modules() if name and id(m) not in captured and looks_like_sge(m)]


def group_sums(x: torch.Tensor, groups: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Sum and sum of squares over each group's channels, each (B, G, H, W) float32, on x's device.

    The square root of the second is the group's vector length ||x_g(p)||_2 at every position p.
    """
    xg = _by_group(x, groups)
    if xg.dtype == torch.float32:
        return group_sum(x, groups), xg.square().sum(dim=2)
    # Half precision (GPUs): the sum of squares reduces in float32 straight from the half values, without a
    # float32 copy of the whole activation: the squared float32 norm (within a few ulp of it).
    return group_sum(x, groups), torch.linalg.vector_norm(xg, dim=2, dtype=torch.float32).square()


def group_sum(x: torch.Tensor, groups: int) -> torch.Tensor:
    """The sum over each group's channels (B, G, H, W) float32 (``group_sums`` without the squares); a half
    precision input is summed in float32 without a float32 copy of it."""
    return _by_group(x, groups).sum(dim=2, dtype=torch.float32)


def _by_group(x: torch.Tensor, groups: int) -> torch.Tensor:
    """x (B, C, H, W) as a (B, G, C / G, H, W) view, detached."""
    b, c, h, w = x.shape
    return x.detach().reshape(b, groups, c // groups, h, w)


class _SigmoidTap(TorchFunctionMode):
    """Keeps every sigmoid output computed while active (functional ``torch.sigmoid`` calls included).
    Torch function modes are per thread, so another thread's forward is never seen."""

    def __init__(self) -> None:
        super().__init__()
        self.outputs: list[torch.Tensor] = []

    def __torch_function__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        if func in _SIGMOIDS and isinstance(out, torch.Tensor):
            self.outputs.append(out)
        return out


_SIGMOIDS = {torch.sigmoid, torch.Tensor.sigmoid, torch.sigmoid_, torch.Tensor.sigmoid_, torch.special.expit,
             torch.nn.functional.sigmoid}


@dataclass
class _Call:
    """One SGE layer's call in progress: the sigmoid outputs seen since it started."""

    active: bool = False
    outputs: list[torch.Tensor] = field(default_factory=list)
    tap: _SigmoidTap | None = None


NOT_A_GATE = "not a spatial group gate: skipped"


def check_gate(x: torch.Tensor, y: torch.Tensor, gate: torch.Tensor, x_sum: torch.Tensor
               ) -> tuple[torch.Tensor | None, str]:
    """``find_gate``'s ``gate`` (B, G, H, W) checked against the module's output: y = x * gate on every channel
    of each group, as far as the group sums tell. y's group sums must equal the gate times x's ``x_sum``
    (B, G, H, W) float32 at every position, to 1e-4 of the largest |x_sum| in float32, 1e-2 in half precision
    (where y = a * x with one factor a per group and position, this says a = gate wherever x's group sum is
    not zero). Returns (the gate, "") or (None, why): a module that gates some of a group's channels, adds the
    input back, or does anything else is refused, never drawn. A sigmoid whose values are laid out (B, H, W, G)
    (channels last) is the same gate in another order and is accepted as such. The gate returned is a view of
    the sigmoid output (the module's own tensor): a caller that keeps it copies it (``GateRecorder`` does)."""
    if _sums_fit(x_sum, group_sum(y, gate.shape[1]), gate):
        return gate, ""
    b, g, h, w = gate.shape
    channels_last = gate.reshape(b, h, w, g).permute(0, 3, 1, 2)
    if _sums_fit(x_sum, group_sum(y, g), channels_last):
        return channels_last, ""
    # Refused (rare): the slower reads that say why.
    x, y = x.detach(), y.detach()
    if _first_channels_fit(x, y, gate) or _first_channels_fit(x, y, channels_last):
        return None, CHANNEL_MISFIT
    return None, misfit_reason(x, y, gate)


def _sums_fit(x_sum: torch.Tensor, y_sum: torch.Tensor, gate: torch.Tensor) -> bool:
    """y_sum = gate * x_sum at every position (``check_gate``'s test; ``y_sum`` is overwritten)."""
    if not y_sum.numel():
        return True
    # |gate| <= 1 (a sigmoid), so the largest |x_sum| bounds the expected sums: the scale of the tolerance.
    error, scale = _largest_abs(y_sum.addcmul_(gate.float(), x_sum, value=-1), x_sum)
    return gate_fits(error, scale, gate.dtype)


def _first_channels_fit(x: torch.Tensor, y: torch.Tensor, gate: torch.Tensor) -> bool:
    """y = x * gate on the first channel of every group (for ``check_gate``'s reason)."""
    per = x.shape[1] // gate.shape[1]
    xs, ys = x[:, ::per], y[:, ::per]  # the first channel of every group: views, no copies
    if not xs.numel():
        return True
    error, scale = _largest_abs(torch.addcmul(ys, xs, gate.to(x.dtype), value=-1), xs)
    return gate_fits(error, scale, x.dtype)


def misfit_reason(x: torch.Tensor, y: torch.Tensor, gate: torch.Tensor) -> str:
    """Why a module's output is not x * gate, where a common cause can be told (computed only for a refused
    module): the input added back around the gate, a sigmoid after the gating, a second sigmoid on the gate."""
    b, g, h, w = gate.shape
    xg = x.float().reshape(b, g, -1, h, w)
    yg = y.float().reshape(b, g, -1, h, w)
    a = gate.float().unsqueeze(2)
    scale = float(yg.abs().amax()) if yg.numel() else 0.0
    causes = (("x * (1 + gate): the input is added back around the gate", xg * (1 + a)),
              ("sigmoid(x * gate): a sigmoid after the gating", torch.sigmoid(xg * a)),
              ("x * sigmoid(gate): a second sigmoid on the gate", xg * torch.sigmoid(a)))
    for cause, expected in causes:
        if gate_fits(float((yg - expected).abs().amax()), scale, x.dtype):
            return f"its output is {cause}, so the gate alone does not say what it does: {NOT_A_GATE}"
    return GATE_MISFIT


GATE_MISFIT = f"its output is not its input times one factor per group and position: {NOT_A_GATE}"
CHANNEL_MISFIT = ("its output is its input times the gate on the first channel of a group but not on all of its "
                  f"channels, so its after-SGE sums and vector lengths would be wrong: {NOT_A_GATE}")


def _largest_abs(*tensors: torch.Tensor) -> list[float]:
    """max |t| of each tensor (all of one dtype), from its minimum and maximum (no |t| copy), read back from the
    device at once."""
    bounds = torch.stack([v for t in tensors for v in torch.aminmax(t)]).float().tolist()
    return [max(-lo, hi) for lo, hi in zip(bounds[::2], bounds[1::2])]


def gate_fits(error: float, scale: float, dtype: torch.dtype) -> bool:
    """Whether a largest difference ``error`` (|y - x * gate|, or of group sums) is within tolerance of the
    largest input value ``scale``: 1e-4 of it in float32, 1e-2 in half precision."""
    tol = 1e-2 if dtype in (torch.float16, torch.bfloat16) else 1e-4
    return error <= tol * scale + 1e-6


OTHER_SHAPES = {3: ("a (B, C, L) sequence", "(G, L)"), 5: ("a (B, C, D, H, W) volume", "(G, D, H, W)")}


def read_other_gate(x: torch.Tensor, y: object, sigmoid_outputs: Sequence[torch.Tensor], groups: int | None
                    ) -> tuple[torch.Tensor | None, str]:
    """The gate of a call over a 1-D (B, C, L) or 3-D (B, C, D, H, W) input: (B, G, L) or (B, G, D, H, W)
    float32, or (None, why not). As ``find_gate`` + ``check_gate``: the last sigmoid output with one value per
    group and position, checked against the output on every channel (y = x * gate, ``gate_fits``' tolerance);
    such modules are rare, so the check reads the whole output."""
    if not isinstance(y, torch.Tensor) or x.shape != y.shape:
        return None, f"its output is not one tensor of its input's shape {tuple(x.shape)}: {NOT_A_GATE}"
    x, y = x.detach(), y.detach()
    b, c, *spatial = x.shape
    positions = max(math.prod(spatial), 1)
    if groups is not None and c % groups:
        return None, f"its group count {groups} does not divide its {c} channels: {NOT_A_GATE}"
    for out in reversed(sigmoid_outputs):
        g = out.numel() // max(b * positions, 1)
        if out.numel() == b * g * positions and g >= 1 and c % g == 0 and (groups is None or g == groups):
            gate = out.detach().float().reshape(b, g, *spatial)
            xg, yg = x.float().reshape(b, g, c // g, *spatial), y.float().reshape(b, g, c // g, *spatial)
            error, scale = _largest_abs(yg - xg * gate.unsqueeze(2), xg)
            if gate_fits(error, scale, x.dtype):
                return gate.clone(), ""
            return None, GATE_MISFIT
    return None, f"it computes no sigmoid with one value per group and position: {NOT_A_GATE}"


def other_gate_note(name: str, gate: torch.Tensor) -> str:
    """Where a captured 1-D or 3-D gate (``GateRecorder.other``: (B, G, L) or (B, G, D, H, W)) can be read, and
    why it is not drawn."""
    over, axes = OTHER_SHAPES[gate.dim()]
    return (f"{name}: a gate over {over}, {axes} = {tuple(gate.shape[1:])} per image: captured (the library's "
            "Analysis.other_gates, analyze's gates.npz, stats.json \"other_layers\" and other_<layer>.png, the "
            "page's \"1-D / 3-D gates\" tab: strips or depth slices), but not drawn over the image and not in "
            "image-set summaries, which show gates over 2-D maps")


def find_gate(x: object, y: object, sigmoid_outputs: Sequence[torch.Tensor], groups: int | None
              ) -> tuple[torch.Tensor | None, str]:
    """The gate (B, G, H, W) of one call of a module with input ``x`` and output ``y``, before ``check_gate``:
    the last sigmoid output computed inside the call that holds one value per group and position (B*G*H*W
    values; G from ``groups``, or read from the output's size when unknown), as a view (not a copy). Without
    one, the ratio ||y_g(p)|| / ||x_g(p)|| of the group's vector lengths (defined only where x_g(p) != 0).
    Else (None, why there is none)."""
    if not (isinstance(x, torch.Tensor) and isinstance(y, torch.Tensor)):
        return None, f"its input and output are not one tensor each: {NOT_A_GATE}"
    if x.dim() != 4:
        over = {3: "a (B, C, L) sequence", 5: "a (B, C, D, H, W) volume"}.get(x.dim(), f"a {x.dim()}-D tensor")
        return None, (f"its input {tuple(x.shape)} is {over}, not a (B, C, H, W) map: only gates over 2-D maps "
                      "are captured and drawn: skipped")
    if x.shape != y.shape:
        return None, f"its output's shape {tuple(y.shape)} is not its input's {tuple(x.shape)}: {NOT_A_GATE}"
    b, c, h, w = x.shape
    if groups is not None and c % groups:
        return None, f"its group count {groups} does not divide its {c} channels: {NOT_A_GATE}"
    for out in reversed(sigmoid_outputs):
        g = out.numel() // max(b * h * w, 1)
        if out.numel() == b * g * h * w and g >= 1 and c % g == 0 and (groups is None or g == groups):
            return out.detach().reshape(b, g, h, w), ""
    if groups is None:
        return None, f"it computes no sigmoid with one value per group and position: {NOT_A_GATE}"
    x_len, y_len = group_sums(x.detach().float(), groups)[1].sqrt(), group_sums(y.detach().float(), groups)[1].sqrt()
    if bool((x_len == 0).any()):
        return None, ("it computes no sigmoid, and its gate (output length / input length) is undefined where "
                      f"a group's input is zero: {NOT_A_GATE}")
    return (y_len / x_len).to(x.dtype), ""


class GateRecorder(HookScope):
    """Context manager that hooks every SGE layer of ``model`` while it is open.

    After the ``with`` block, ``captures`` maps each SGE layer's module path (e.g. "layer3.1.sge") to a
    ``LayerCapture`` of (B, G, H, W) float32 CPU tensors: ``gate`` in (0, 1) and, with ``activations=True``,
    the group sums and sums of squares of SGE's input and (unless ``output_sums=False``) output. A module
    called more than once per forward gives one entry per call: ``name``, ``name#2``, ... Every call's gate
    is checked against the module's output (``check_gate``); a module that fails is left out of
    ``captures`` and named in ``skipped`` with the reason. ``patterns`` (fnmatch over module paths) adds
    modules that structure detection misses. Hooks are removed on exit, also after an exception; the
    model's outputs are unchanged, and it runs in eval mode inside the block (its own modes are restored
    afterwards).
    """

    def __init__(self, model: nn.Module, activations: bool = True, keep_on_device: bool = False,
                 patterns: Sequence[str] = (), output_sums: bool = True):
        self.model = model
        self.activations = activations
        # False: leave ``after`` / ``after_sq`` None. y = x * gate is checked, so a caller that derives only
        # what it needs from the gate and the input's sums (dissect) saves two full-size products per layer.
        self.output_sums = output_sums
        # True: at exit the captures stay on the model's device (derived 'after' sums included) for
        # reductions there; only their results need cross to the host.
        self.keep_on_device = keep_on_device
        self.layers = find_sge_layers(model, patterns)
        self.captures: dict[str, LayerCapture] = {}
        # Gates over 1-D and 3-D inputs ((B, G, L), (B, G, D, H, W) float32 on the CPU): kept, not drawn.
        self.other: dict[str, torch.Tensor] = {}
        self.skipped: dict[str, str] = {}
        self._calls: dict[str, int] = {}
        super().__init__()

    @property
    def layer_names(self) -> list[str]:
        """The captured layers in the order of their calls (``name#2`` for a second call, skipped ones left
        out); before any forward, the SGE modules that will be hooked."""
        return list(self.captures) if self.captures else [name for name, _ in self.layers]

    def _register(self) -> None:
        self.captures, self.other, self.skipped, self._calls = {}, {}, {}, {}
        self._keep(self.model.register_forward_pre_hook(self._new_forward))
        for name, module in self.layers:
            call = _Call()
            # This project's module calls its ``sig`` child once: a hook there is cheapest. Any other module
            # (a copy may own a ``sig`` child and still call torch.sigmoid) gets the per-call sigmoid tap.
            sig = module.sig if type(module) is SpatialGroupEnhance else None
            if sig is not None:
                self._keep(sig.register_forward_hook(self._sigmoid_hook(call)))
            groups = sge_groups(module)
            self._keep(module.register_forward_pre_hook(self._enter_hook(call, functional=sig is None)))
            self._keep(module.register_forward_hook(self._exit_hook(name, groups, call), always_call=True))

    def _closed(self) -> None:
        self._to_cpu()

    def _new_forward(self, _module, _inputs) -> None:
        if self._mine():
            self._calls = {}

    def _to_cpu(self) -> None:
        """Finish what the hooks left on the device: derived 'after' sums, then float32 on the CPU."""
        for capture in self.captures.values():
            if self.output_sums and capture.after is None and capture.before is not None and capture.gate.numel():
                gate = capture.gate.float()
                capture.after = gate * capture.before
                capture.after_sq = gate.square() * capture.before_sq
            if self.keep_on_device:
                continue
            capture.gate = capture.gate.float().cpu()
            for name in ("before", "after", "before_sq", "after_sq"):
                value = getattr(capture, name)
                if value is not None:
                    setattr(capture, name, value.cpu())

    def _sigmoid_hook(self, call: _Call):
        def hook(_module, _inputs, output):
            if call.active and self._mine():
                call.outputs.append(output)
        return hook

    def _enter_hook(self, call: _Call, functional: bool):
        def hook(_module, _inputs):
            if self._mine():
                call.active, call.outputs = True, []
                if functional:  # no sigmoid child: catch torch.sigmoid calls made inside this call
                    call.tap = _SigmoidTap()
                    call.tap.__enter__()
        return hook

    def _exit_hook(self, name: str, groups: int | None, call: _Call):
        def hook(_module, inputs, output):
            if not (call.active and self._mine()):
                return
            call.active = False
            outputs = call.outputs
            if call.tap is not None:
                call.tap.__exit__(None, None, None)
                outputs, call.tap = call.tap.outputs, None
            call.outputs = []
            if output is None:  # the forward raised: nothing to record
                return
            count = self._calls[name] = self._calls.get(name, 0) + 1
            key = name if count == 1 else f"{name}#{count}"
            x = inputs[0] if inputs else None
            if isinstance(x, torch.Tensor) and x.dim() in OTHER_SHAPES:
                gate, why = read_other_gate(x, output, outputs, groups)
                if gate is None:
                    self.skipped[key] = f"its input {tuple(x.shape)} is {OTHER_SHAPES[x.dim()][0]}, and {why}"
                else:
                    self.other[key] = gate.cpu()
                return
            gate, why = find_gate(x, output, outputs, groups)
            if gate is not None:
                groups_of_gate = gate.shape[1]
                sums = group_sums(x, groups_of_gate) if self.activations else (group_sum(x, groups_of_gate), None)
                gate, why = check_gate(x, output, gate, sums[0])
            if gate is None:
                self.skipped[key] = why
                self.captures.pop(key, None)
                return
            # A copy: the module may reuse its sigmoid's tensor (an out= buffer) on its next call.
            capture = self.captures[key] = LayerCapture(gate.clone(memory_format=torch.contiguous_format))
            if self.activations:
                # y = x * gate was just checked, so the output's sums are derived from the input's at exit.
                capture.before, capture.before_sq = sums
                capture.channels = int(x.shape[1])
        return hook


def require_gates(recorder: GateRecorder) -> None:
    """Raise SGEVizError naming every SGE module and why it was refused when a forward gave no gate at all
    (each module passed the check at load time, on another input, and failed it on this one)."""
    if recorder.captures or not recorder.skipped:  # gates were read, or the network has no SGE module called
        return
    why = "; ".join(f"{name}: {reason}" for name, reason in recorder.skipped.items())
    tried = ", ".join(name for name, _ in recorder.layers) or "none"
    raise SGEVizError(f"No SGE gate could be read on this input (modules: {tried}). {why}. A gate is drawn only "
                      "where the module's output is its input times the gate on every channel, so nothing is "
                      "shown.")
