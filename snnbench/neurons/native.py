"""A small C++ kernel for the fused LIF loop on the CPU: one pass over memory per tensor.

The PyTorch fused loop (``snnbench.neurons.fused``) makes ~3 elementwise passes per step
forward and ~6 backward, each reading and writing whole ``[B, ...]`` slices; this kernel walks
every neuron's T steps in registers (a block of neighbours at a time), so forward reads the
input and writes spikes and ``u_t`` once, and backward reads the output gradient and ``u_t``
and writes the input gradient once: the memory-traffic bound of docs/performance.md.

Built at first use with ``torch.utils.cpp_extension.load_inline`` (a C++ compiler and ninja;
cached by PyTorch under ``TORCH_EXTENSIONS_DIR``, one build per CPU model and flags). It covers
every neuron with a fused path (LIF, Noisy-LIF, Het, RandHet, RandHet*, DLIF; tet or convex
form; input, decay and gain gradients) with the registered surrogates, on float32/float64 CPU
tensors; noise and decays that arrive in another memory layout are copied into the input's
first (a tiled transpose), a decay shared by every sample (Het) is read modulo its size.
Anything else (CUDA, a surrogate registered later), a machine without a compiler, or
``SNNBENCH_NATIVE=0`` takes the PyTorch path; :func:`status` says which path runs and why.
Same operations in the same order as the PyTorch loop (``-ffp-contract=off``: no fused
multiply-add), so spikes and potentials are equal bit for bit; gradients agree within rounding.
"""

from __future__ import annotations

import hashlib
import logging
import math
import os
import platform
import threading
from pathlib import Path

import torch

ENV = "SNNBENCH_NATIVE"
SURROGATE_CODES = {"triangle": 0, "atan": 1, "rect": 2, "sigmoid": 3, "fastsigmoid": 4, "exp": 5}

_SOURCE = r"""
#include <torch/extension.h>
#include <ATen/Parallel.h>
#include <cmath>
#include <mutex>
#include <vector>

namespace {
constexpr int64_t MAX_BLOCK = 65536;   // neighbours per block, at most

// One fused call. Tensors are [T, N] in one memory layout (N = one step's values); the decay is
// a float or a tensor (per step: T stride N, else held over T: stride 0); gains one per step.
template <typename S>
struct Args {
  const S* x; const S* noise; const S* decay; const S* gain;
  S* spikes; S* pot;
  const S* grad; S* grad_x; S* grad_k; double* grad_p;
  int64_t T, N, decay_tstride, decay_period, block;
  double k, theta, width;
  bool convex, ge, detach, per_step_k_grad;
};

template <typename S>
inline S surrogate(S x, S w, int kind) {
  const S a = std::abs(x);
  switch (kind) {
    case 0: return std::max(S(0), w - a) / (w * w);
    case 1: { const S y = S(M_PI) * w * x / S(2); return (w / S(2)) / (S(1) + y * y); }
    case 2: return S(a < w / S(2)) / w;
    case 3: { const S k = S(4) / w; const S s = S(1) / (S(1) + std::exp(-k * x));
              return k * s * (S(1) - s); }
    case 4: { const S k = S(2) / w; const S d = S(1) + k * a; return k / (S(2) * d * d); }
    default: return std::exp(-a / w) / (S(2) * w);
  }
}

// The PyTorch loop's operations in its order: current = p_t x; drive = (1 - k) current
// (convex); u = k v + drive; (+ diffusive noise); s = H(z - theta); v = u - u s.
// NOISE: 0 none, 1 diffusive (into u), 2 escape (into what fires); KT: the decay is a tensor.
template <typename S, int NOISE, bool KT, bool SAVE>
void forward_kernel(const Args<S>& a) {
  const S theta = S(a.theta), k0 = S(a.k), c0 = a.convex ? S(1.0 - a.k) : S(1);
  const int64_t BLOCK = a.block;
  at::parallel_for(0, a.N, BLOCK, [&](int64_t begin, int64_t end) {
    std::vector<S> state(std::min(BLOCK, end - begin));
    S* __restrict__ v = state.data();
    for (int64_t b0 = begin; b0 < end; b0 += BLOCK) {
      const int64_t n = std::min(BLOCK, end - b0);
      for (int64_t t = 0; t < a.T; ++t) {
        const int64_t o = t * a.N + b0;
        const S* __restrict__ xt = a.x + o;
        const S* __restrict__ nt = NOISE ? a.noise + o : nullptr;
        const S* kbase = KT ? a.decay + t * a.decay_tstride : nullptr;
        S* __restrict__ st = a.spikes + o;
        S* __restrict__ ut = SAVE ? a.pot + o : nullptr;
        const S p = a.gain ? a.gain[t] : S(1);
        const bool first = t == 0, ge = a.ge, convex = a.convex;
        for (int64_t j0 = 0; j0 < n;) {      // runs within one period of the decay
        const int64_t off = KT ? (b0 + j0) % a.decay_period : 0;
        const int64_t j1 = KT ? std::min(n, j0 + a.decay_period - off) : n;
        const S* __restrict__ kt = KT ? kbase + off - j0 : nullptr;
        for (int64_t j = j0; j < j1; ++j) {
          const S k = KT ? kt[j] : k0;
          const S c = KT ? (convex ? S(1) - k : S(1)) : c0;
          const S drive = c * (p * xt[j]);
          S u = first ? drive : k * v[j] + drive;
          if (NOISE == 1) u = u + nt[j];
          const S z = NOISE == 2 ? u + nt[j] : u;
          const S s = ge ? S(z >= theta) : S(z > theta);
          st[j] = s;
          if (SAVE) ut[j] = u;
          v[j] = u - u * s;
        }
        j0 = j1;
        }
      }
    }
  });
}

// BPTT through the hard reset (snnbench/neurons/fused.py docstring), per neuron, t = T-1..0:
// du = dv (1 - s) + (ds - [not detach] dv u) g(z - theta), dv = du_{t+1} k_{t+1};
// dI = du c p; dk_t = du (v_{t-1} - [convex] p I); dp_t = sum du c I.
template <typename S, int NOISE, bool KT>
void forward_save(const Args<S>& a) {
  if (a.pot) forward_kernel<S, NOISE, KT, true>(a); else forward_kernel<S, NOISE, KT, false>(a);
}

template <typename S, bool ESCAPE, bool KT, int KIND, bool WANT_K, bool WANT_P>
void backward_kernel(const Args<S>& a) {
  const S theta = S(a.theta), w = S(a.width), k0 = S(a.k), c0 = a.convex ? S(1.0 - a.k) : S(1);
  const S keep_reset = a.detach ? S(0) : S(1);
  std::mutex lock;
  const int64_t BLOCK = a.block;
  at::parallel_for(0, a.N, BLOCK, [&](int64_t begin, int64_t end) {
    std::vector<S> state(2 * std::min(BLOCK, end - begin));
    S* __restrict__ carry = state.data();                   // du_{t+1} k_{t+1}
    S* __restrict__ held = carry + std::min(BLOCK, end - begin);   // held decay's gradient
    std::vector<double> partial(WANT_P ? a.T : 0, 0.0);
    for (int64_t b0 = begin; b0 < end; b0 += BLOCK) {
      const int64_t n = std::min(BLOCK, end - b0);
      for (int64_t j = 0; j < n; ++j) { carry[j] = S(0); held[j] = S(0); }
      for (int64_t t = a.T - 1; t >= 0; --t) {
        const int64_t o = t * a.N + b0;
        const S* __restrict__ gt = a.grad + o;
        const S* __restrict__ ut = a.pot + o;
        const S* __restrict__ nt = ESCAPE ? a.noise + o : nullptr;
        const S* kbase = KT ? a.decay + t * a.decay_tstride : nullptr;
        const S* __restrict__ xt = (WANT_P || (WANT_K && a.convex)) ? a.x + o : nullptr;
        const S* __restrict__ up = (WANT_K && t > 0) ? a.pot + o - a.N : nullptr;
        const S* __restrict__ np = (WANT_K && ESCAPE && t > 0) ? a.noise + o - a.N : nullptr;
        S* __restrict__ dxt = a.grad_x + o;
        const S p = a.gain ? a.gain[t] : S(1);
        const bool ge = a.ge, convex = a.convex, later = t > 0;
        double dp = 0.0;
        for (int64_t j0 = 0; j0 < n;) {      // runs within one period of the decay
        const int64_t off = KT ? (b0 + j0) % a.decay_period : 0;
        const int64_t j1 = KT ? std::min(n, j0 + a.decay_period - off) : n;
        const S* __restrict__ kt = KT ? kbase + off - j0 : nullptr;
        for (int64_t j = j0; j < j1; ++j) {
          const S u = ut[j];
          const S z = ESCAPE ? u + nt[j] : u;
          const S silent = ge ? S(z < theta) : S(z <= theta);
          const S dv = carry[j];
          const S ds = gt[j] - keep_reset * (dv * u);
          const S du = dv * silent + ds * surrogate<S>(z - theta, w, KIND);
          const S k = KT ? kt[j] : k0;
          const S c = KT ? (convex ? S(1) - k : S(1)) : c0;
          dxt[j] = (du * c) * p;
          if (WANT_P) dp += double(du * c * xt[j]);
          if (WANT_K) {
            S term = S(0);
            if (later) {
              const S zp = ESCAPE ? up[j] + np[j] : up[j];
              const S sp = ge ? S(zp < theta) : S(zp <= theta);
              term = du * (up[j] * sp);
            }
            if (convex) term = term - du * (p * xt[j]);
            if (a.per_step_k_grad) a.grad_k[o + j] = term; else held[j] += term;
          }
          carry[j] = du * k;
        }
        j0 = j1;
        }
        if (WANT_P) partial[t] += dp;
      }
      if (WANT_K && !a.per_step_k_grad)
        for (int64_t j = 0; j < n; ++j) a.grad_k[b0 + j] = held[j];
    }
    if (WANT_P) {
      std::lock_guard<std::mutex> guard(lock);
      for (int64_t t = 0; t < a.T; ++t) a.grad_p[t] += partial[t];
    }
  });
}

template <typename S, bool ESCAPE, bool KT, int KIND>
void backward_wants(const Args<S>& a, bool want_k, bool want_p) {
  if (want_k && want_p) backward_kernel<S, ESCAPE, KT, KIND, true, true>(a);
  else if (want_k) backward_kernel<S, ESCAPE, KT, KIND, true, false>(a);
  else if (want_p) backward_kernel<S, ESCAPE, KT, KIND, false, true>(a);
  else backward_kernel<S, ESCAPE, KT, KIND, false, false>(a);
}

template <typename S, bool ESCAPE, bool KT>
void backward_kind(const Args<S>& a, int kind, bool want_k, bool want_p) {
  switch (kind) {
    case 0: backward_wants<S, ESCAPE, KT, 0>(a, want_k, want_p); break;
    case 1: backward_wants<S, ESCAPE, KT, 1>(a, want_k, want_p); break;
    case 2: backward_wants<S, ESCAPE, KT, 2>(a, want_k, want_p); break;
    case 3: backward_wants<S, ESCAPE, KT, 3>(a, want_k, want_p); break;
    case 4: backward_wants<S, ESCAPE, KT, 4>(a, want_k, want_p); break;
    default: backward_wants<S, ESCAPE, KT, 5>(a, want_k, want_p);
  }
}

template <typename S>
const S* ptr(const c10::optional<torch::Tensor>& t) {
  return t ? t->data_ptr<S>() : nullptr;
}

template <typename S>
Args<S> args(const torch::Tensor& like, const c10::optional<torch::Tensor>& decay_t,
             bool per_step, const c10::optional<torch::Tensor>& gain, double decay,
             bool convex, double theta, bool ge) {
  Args<S> a{};
  a.T = like.size(0); a.N = like.numel() / a.T;
  // Each block streams T slices of each tensor: up to T = 4 (12 streams forward) short runs of
  // 256 neighbours keep within the prefetchers' reach; beyond, long runs do (measured on the
  // 2-core x86 machine: 0.8x vs 1.0x the add-bandwidth bound at T <= 4, 2.1x vs 1.1x at T = 8).
  a.block = a.T <= 4 ? 256 : MAX_BLOCK;
  a.decay = ptr<S>(decay_t); a.decay_tstride = per_step ? a.N : 0; a.gain = ptr<S>(gain);
  // a held decay of one sample's size repeats along the batch: it is read modulo its size
  a.decay_period = decay_t && !per_step ? decay_t->numel() : a.N;
  a.k = decay; a.convex = convex; a.theta = theta; a.ge = ge;
  return a;
}
}  // namespace

// Row-major [M, C, P] into [M, P, C] (channels_last), in 32 x 32 tiles: PyTorch's own copy
// between these layouts takes several times the memory bound on the CPU.
void channels_last_copy(torch::Tensor src, torch::Tensor dst, int64_t M, int64_t C, int64_t P) {
  AT_DISPATCH_FLOATING_TYPES(src.scalar_type(), "channels_last_copy", [&] {
    const scalar_t* s = src.data_ptr<scalar_t>();
    scalar_t* d = dst.data_ptr<scalar_t>();
    constexpr int64_t TILE = 16, ROW = 128;     // 16 channels x 128 pixels per tile
    const int64_t tiles = (P + ROW - 1) / ROW;
    at::parallel_for(0, M * tiles, 16, [&](int64_t begin, int64_t end) {
      alignas(64) scalar_t tile[TILE][ROW];
      for (int64_t i = begin; i < end; ++i) {
        const int64_t m = i / tiles, p0 = (i % tiles) * ROW, np = std::min(ROW, P - p0);
        const scalar_t* sm = s + m * C * P + p0;
        scalar_t* dm = d + m * P * C + p0 * C;
        for (int64_t c0 = 0; c0 < C; c0 += TILE) {
          const int64_t nc = std::min(TILE, C - c0);
          for (int64_t c = 0; c < nc; ++c)          // whole rows in: contiguous reads
            for (int64_t p = 0; p < np; ++p) tile[c][p] = sm[(c0 + c) * P + p];
          for (int64_t p = 0; p < np; ++p)          // whole pixels out: contiguous writes
            for (int64_t c = 0; c < nc; ++c) dm[p * C + c0 + c] = tile[c][p];
        }
      }
    });
  });
}

void lif_forward(torch::Tensor x, c10::optional<torch::Tensor> noise,
                 c10::optional<torch::Tensor> decay_t, bool per_step,
                 c10::optional<torch::Tensor> gain, torch::Tensor spikes,
                 c10::optional<torch::Tensor> pot,
                 double decay, bool convex, double theta, bool ge, bool escape) {
  const int mode = noise ? (escape ? 2 : 1) : 0;
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "lif_forward", [&] {
    Args<scalar_t> a = args<scalar_t>(x, decay_t, per_step, gain, decay, convex, theta, ge);
    a.x = x.data_ptr<scalar_t>(); a.noise = ptr<scalar_t>(noise);
    a.spikes = spikes.data_ptr<scalar_t>(); a.pot = pot ? pot->data_ptr<scalar_t>() : nullptr;
    const bool kt = decay_t.has_value();
    if (mode == 0) { if (kt) forward_save<scalar_t, 0, true>(a); else forward_save<scalar_t, 0, false>(a); }
    else if (mode == 1) { if (kt) forward_save<scalar_t, 1, true>(a); else forward_save<scalar_t, 1, false>(a); }
    else { if (kt) forward_save<scalar_t, 2, true>(a); else forward_save<scalar_t, 2, false>(a); }
  });
}

void lif_backward(torch::Tensor grad, torch::Tensor pot, c10::optional<torch::Tensor> noise,
                  c10::optional<torch::Tensor> decay_t, bool per_step,
                  c10::optional<torch::Tensor> gain, c10::optional<torch::Tensor> x,
                  torch::Tensor grad_x, c10::optional<torch::Tensor> grad_k,
                  c10::optional<torch::Tensor> grad_p, double decay, bool convex, double theta,
                  bool ge, bool detach_reset, int64_t kind, double width) {
  AT_DISPATCH_FLOATING_TYPES(pot.scalar_type(), "lif_backward", [&] {
    Args<scalar_t> a = args<scalar_t>(pot, decay_t, per_step, gain, decay, convex, theta, ge);
    a.grad = grad.data_ptr<scalar_t>(); a.pot = pot.data_ptr<scalar_t>();
    a.noise = ptr<scalar_t>(noise); a.x = ptr<scalar_t>(x);
    a.grad_x = grad_x.data_ptr<scalar_t>();
    a.grad_k = grad_k ? grad_k->data_ptr<scalar_t>() : nullptr;
    a.per_step_k_grad = per_step;
    a.grad_p = grad_p ? grad_p->data_ptr<double>() : nullptr;
    a.detach = detach_reset; a.width = width;
    const bool esc = noise.has_value(), kt = decay_t.has_value();
    const bool wk = grad_k.has_value(), wp = grad_p.has_value();
    if (esc && kt) backward_kind<scalar_t, true, true>(a, (int)kind, wk, wp);
    else if (esc) backward_kind<scalar_t, true, false>(a, (int)kind, wk, wp);
    else if (kt) backward_kind<scalar_t, false, true>(a, (int)kind, wk, wp);
    else backward_kind<scalar_t, false, false>(a, (int)kind, wk, wp);
  });
}
"""
_DECLARATIONS = r"""
void channels_last_copy(torch::Tensor src, torch::Tensor dst, int64_t M, int64_t C, int64_t P);
void lif_forward(torch::Tensor x, c10::optional<torch::Tensor> noise,
                 c10::optional<torch::Tensor> decay_t, bool per_step,
                 c10::optional<torch::Tensor> gain, torch::Tensor spikes,
                 c10::optional<torch::Tensor> pot,
                 double decay, bool convex, double theta, bool ge, bool escape);
void lif_backward(torch::Tensor grad, torch::Tensor pot, c10::optional<torch::Tensor> noise,
                  c10::optional<torch::Tensor> decay_t, bool per_step,
                  c10::optional<torch::Tensor> gain, c10::optional<torch::Tensor> x,
                  torch::Tensor grad_x, c10::optional<torch::Tensor> grad_k,
                  c10::optional<torch::Tensor> grad_p, double decay, bool convex, double theta,
                  bool ge, bool detach_reset, int64_t kind, double width);
"""

_lock = threading.Lock()
_module = None
_why_not: str | None = None


def _build():
    # cpp_extension logs a CUDA_HOME warning on CPU-only machines at import: not ours to show
    logger = logging.getLogger("torch.utils.cpp_extension")
    previous = logger.level
    logger.setLevel(logging.ERROR)
    try:
        from torch.utils.cpp_extension import load_inline

        return _load(load_inline)
    finally:
        logger.setLevel(previous)


def _cpu_tag() -> str:
    """A short hash of this CPU's model and instruction flags: ``-march=native`` code built on
    one machine must not be loaded on another (a home shared by cluster nodes)."""
    try:
        lines = Path("/proc/cpuinfo").read_text().splitlines()
        wanted = [line for line in lines if line.startswith(("model name", "flags"))][:2]
    except OSError:
        wanted = []
    text = "\n".join(wanted) or f"{platform.machine()} {platform.processor()}"
    return hashlib.sha256(text.encode()).hexdigest()[:10]


def _load(load_inline):
    return load_inline(
        name=f"snnbench_lif_native_{_cpu_tag()}",
        cpp_sources=[_DECLARATIONS, _SOURCE],
        functions=["lif_forward", "lif_backward", "channels_last_copy"],
        extra_cflags=["-O3", "-march=native", "-ffp-contract=off", "-fno-math-errno"],
        verbose=False,
    )


def module():
    """The compiled extension, building it at the first call; None where it cannot be."""
    global _module, _why_not
    if os.environ.get(ENV, "").strip() == "0":
        return None
    if _module is None and _why_not is None:
        with _lock:
            if _module is None and _why_not is None:
                try:
                    _module = _build()
                except Exception as error:  # noqa: BLE001 - no compiler, headers, ninja: PyTorch path
                    _why_not = f"{type(error).__name__}: {str(error).strip().splitlines()[-1:]}"
    return _module


def status() -> str:
    """Which CPU path the fused LIF takes here, in words (the benchmark prints it)."""
    if os.environ.get(ENV, "").strip() == "0":
        return f"PyTorch fused loop ({ENV}=0)"
    if module() is not None:
        return "native C++ kernel (built with load_inline)"
    return f"PyTorch fused loop (native kernel unavailable: {_why_not})"


def _dense(tensor: torch.Tensor) -> bool:
    """No gaps, no overlaps: some permutation of the dims is contiguous."""
    expected = 1
    for size, stride in sorted(zip(tensor.shape, tensor.stride()), key=lambda d: d[1]):
        if size == 1:
            continue
        if stride != expected:
            return False
        expected *= size
    return True


def same_layout(reference: torch.Tensor, *others: torch.Tensor | None) -> bool:
    """Dense tensors sharing ``reference``'s shape and strides, T slices back to back."""
    if not _dense(reference):
        return False
    if reference.dim() == 0 or reference.stride(0) * reference.shape[0] != reference.numel():
        return False
    return all(
        o is None or (o.shape == reference.shape and o.stride() == reference.stride())
        for o in others
    )


def covers(x: torch.Tensor, decay, gain, noise, spec) -> bool:
    """Whether the kernel computes this call (module docstring)."""
    tensors = [t for t in (decay, gain, noise) if isinstance(t, torch.Tensor)]
    return (
        x.device.type == "cpu"
        and x.dtype in (torch.float32, torch.float64)
        and all(t.dtype == x.dtype and t.device == x.device for t in tensors)
        and (gain is None or gain.shape == (x.shape[0],))
        and spec.surrogate.kind in SURROGATE_CODES
        and module() is not None
    )


def like(reference: torch.Tensor, tensor: torch.Tensor | None) -> torch.Tensor | None:
    """``tensor`` broadcast to ``reference`` in its memory layout (a copy only where needed).

    Random draws arrive row-major (``normal_like``) while the input may be channels_last:
    that copy goes through the kernel's tiled transpose.
    """
    if tensor is None or same_layout(reference, tensor):
        return tensor
    out = torch.empty_like(reference)
    if _channels_last(reference) and tensor.dtype == reference.dtype:
        source = tensor.expand_as(reference).contiguous()
        channels, pixels = reference.shape[-3], reference.shape[-2] * reference.shape[-1]
        module().channels_last_copy(
            source, out, reference.numel() // (channels * pixels), channels, pixels
        )
        return out
    return out.copy_(tensor.expand_as(reference))


def _channels_last(tensor: torch.Tensor) -> bool:
    """``[..., C, H, W]`` stored as ``[..., H, W, C]``, the leading dims back to back."""
    if tensor.dim() < 3 or module() is None:
        return False
    *lead, c, h, w = tensor.shape
    expected = [c * h * w * math.prod(lead[i + 1 :]) for i in range(len(lead))] + [1, w * c, c]
    return all(
        size == 1 or stride == want
        for size, stride, want in zip(tensor.shape, tensor.stride(), expected)
    )


def full_decay(x: torch.Tensor, decay, spec):
    """A tensor decay in the kernel's form: ``[T, ...]`` like ``x`` (per step), one sample's
    ``[...]`` like ``x[0, 0]`` where it is the same for every sample (Het: the kernel reads it
    modulo its size), else ``[B, ...]`` like ``x[0]``; a float stays a float."""
    if not isinstance(decay, torch.Tensor):
        return None
    if spec.decay_per_step:
        return like(x, decay)
    sample = x[0, 0]
    if decay.dim() <= sample.dim() or (decay.dim() == x[0].dim() and decay.shape[0] == 1):
        return like(
            sample,
            decay.reshape(decay.shape[-sample.dim() :]) if decay.dim() > sample.dim() else decay,
        )
    return like(x[0], decay)


def forward(
    x: torch.Tensor,
    decay,
    gain: torch.Tensor | None,
    noise: torch.Tensor | None,
    spec,
    potentials: torch.Tensor | None,
) -> torch.Tensor:
    """Spikes of ``x`` (dense, T slices back to back); ``potentials`` receives u_t."""
    spikes = torch.empty_like(x)
    scalar = 0.0 if isinstance(decay, torch.Tensor) else float(decay)
    module().lif_forward(
        x,
        like(x, noise),
        full_decay(x, decay, spec),
        spec.decay_per_step,
        None if gain is None else gain.contiguous(),
        spikes,
        potentials,
        scalar,
        spec.convex,
        float(spec.theta),
        spec.ge,
        spec.escape,
    )
    return spikes


def backward(
    grad: torch.Tensor,
    potentials: torch.Tensor,
    noise: torch.Tensor | None,
    decay,
    gain: torch.Tensor | None,
    x: torch.Tensor | None,
    spec,
    wants: tuple[bool, bool, bool],
):
    """``(grad_x, grad_decay, grad_gain)`` of one fused call, None where not wanted."""
    want_x, want_k, want_p = wants
    grad_x = torch.empty_like(potentials)
    tensor_decay = full_decay(potentials, decay, spec)
    grad_k = None
    if want_k:  # per neuron and sample, summed over T (held) or not (per step)
        grad_k = torch.empty_like(potentials if spec.decay_per_step else potentials[0])
    grad_p = potentials.new_zeros(potentials.shape[0], dtype=torch.float64) if want_p else None
    scalar = 0.0 if isinstance(decay, torch.Tensor) else float(decay)
    module().lif_backward(
        like(potentials, grad),
        potentials,
        noise if spec.escape else None,
        tensor_decay,
        spec.decay_per_step,
        None if gain is None else gain.contiguous(),
        like(potentials, x),
        grad_x,
        grad_k,
        grad_p,
        scalar,
        spec.convex,
        float(spec.theta),
        spec.ge,
        spec.detach_reset,
        SURROGATE_CODES[spec.surrogate.kind],
        float(spec.surrogate.width),
    )
    if grad_k is not None:
        grad_k = grad_k.sum_to_size(decay.shape)  # broadcast decays: summed back
    if grad_p is not None:
        grad_p = grad_p.to(gain.dtype)
    return (grad_x if want_x else None), grad_k, grad_p
