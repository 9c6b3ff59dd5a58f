"""A small C++ kernel for the fused LIF loop on the CPU: one pass over memory per tensor.

The PyTorch fused loop (``snnbench.neurons.fused``) makes ~3 elementwise passes per step
forward and ~6 backward, each reading and writing whole ``[B, ...]`` slices; this kernel walks
every neuron's T steps in registers, so forward reads the input and writes spikes and ``u_t``
once, and backward reads the output gradient and ``u_t`` and writes the input gradient once:
the memory-traffic bound of docs/performance.md.

Built at first use with ``torch.utils.cpp_extension.load_inline`` (a C++ compiler and ninja;
cached by PyTorch under ``TORCH_EXTENSIONS_DIR``), for the cases it covers: a float decay (LIF,
Noisy-LIF; tet or convex form), no gain, the registered surrogates, float32/float64 CPU tensors
of one memory layout. Anything else, or a machine without a compiler, or
``SNNBENCH_NATIVE=0``, takes the PyTorch path; :func:`status` says which path runs and why.
Same operations in the same order as the PyTorch loop (``-ffp-contract=off``: no fused
multiply-add), so spikes and potentials are equal bit for bit; gradients agree within rounding.
"""
from __future__ import annotations

import os
import threading

import torch

ENV = "SNNBENCH_NATIVE"
SURROGATE_CODES = {"triangle": 0, "atan": 1, "rect": 2, "sigmoid": 3, "fastsigmoid": 4, "exp": 5}

_SOURCE = r"""
#include <torch/extension.h>
#include <ATen/Parallel.h>
#include <cmath>

namespace {
constexpr int64_t BLOCK = 256;

template <typename S>
inline S surrogate(S x, int kind, S w) {
  S a = std::abs(x);
  switch (kind) {
    case 0: return std::max(S(0), w - a) / (w * w);
    case 1: { S y = S(M_PI) * w * x / S(2); return (w / S(2)) / (S(1) + y * y); }
    case 2: return a < w / S(2) ? S(1) / w : S(0);
    case 3: { S k = S(4) / w; S s = S(1) / (S(1) + std::exp(-k * x)); return k * s * (S(1) - s); }
    case 4: { S k = S(2) / w; S d = S(1) + k * a; return k / (S(2) * d * d); }
    default: return std::exp(-a / w) / (S(2) * w);
  }
}

// NOISE: 0 none, 1 diffusive (added to u), 2 escape (added to what fires). Branch-free inner
// loops over BLOCK neighbours (vectorised); every flag a template parameter.
template <typename S, bool CONVEX, bool GE, int NOISE>
void forward_kernel(const S* __restrict__ x, const S* __restrict__ noise, S* __restrict__ spikes,
                    S* __restrict__ pot, int64_t T, int64_t N, double decay, double theta_d) {
  const S k = S(decay), c = S(1.0 - decay), theta = S(theta_d);
  at::parallel_for(0, N, 16 * BLOCK, [&](int64_t begin, int64_t end) {
    alignas(64) S v[BLOCK];
    for (int64_t b0 = begin; b0 < end; b0 += BLOCK) {
      const int64_t n = std::min(BLOCK, end - b0);
      for (int64_t t = 0; t < T; ++t) {
        const int64_t o = t * N + b0;
        const S* __restrict__ xt = x + o;
        const S* __restrict__ nt = NOISE ? noise + o : nullptr;
        S* __restrict__ st = spikes + o;
        S* __restrict__ ut = pot + o;
        const S keep = t == 0 ? S(0) : k;
        for (int64_t j = 0; j < n; ++j) {
          const S drive = CONVEX ? c * xt[j] : xt[j];
          S u = t == 0 ? drive : v[j] * keep + drive;
          if (NOISE == 1) u = u + nt[j];
          const S z = NOISE == 2 ? u + nt[j] : u;
          const S s = GE ? S(z >= theta) : S(z > theta);
          st[j] = s;
          ut[j] = u;
          v[j] = u - u * s;
        }
      }
    }
  });
}

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

template <typename S, bool CONVEX, bool GE, bool ESCAPE, bool DETACH, int KIND>
void backward_kernel(const S* __restrict__ grad, const S* __restrict__ pot,
                     const S* __restrict__ noise, S* __restrict__ grad_x, int64_t T, int64_t N,
                     double decay, double theta_d, double width) {
  const S k = S(decay), c = S(1.0 - decay), theta = S(theta_d), w = S(width);
  at::parallel_for(0, N, 16 * BLOCK, [&](int64_t begin, int64_t end) {
    alignas(64) S carry[BLOCK];     // du_{t+1}
    for (int64_t b0 = begin; b0 < end; b0 += BLOCK) {
      const int64_t n = std::min(BLOCK, end - b0);
      for (int64_t j = 0; j < n; ++j) carry[j] = S(0);
      for (int64_t t = T - 1; t >= 0; --t) {
        const int64_t o = t * N + b0;
        const S* __restrict__ gt = grad + o;
        const S* __restrict__ ut = pot + o;
        const S* __restrict__ nt = ESCAPE ? noise + o : nullptr;
        S* __restrict__ dxt = grad_x + o;
        for (int64_t j = 0; j < n; ++j) {
          const S u = ut[j];
          const S z = ESCAPE ? u + nt[j] : u;
          const S silent = GE ? S(z < theta) : S(z <= theta);
          const S dv = carry[j] * k;
          const S ds = DETACH ? gt[j] : gt[j] - dv * u;
          const S du = dv * silent + ds * surrogate<S>(z - theta, w, KIND);
          dxt[j] = CONVEX ? du * c : du;
          carry[j] = du;
        }
      }
    }
  });
}

// Runtime flags to template instances.
template <typename S, bool CONVEX, bool GE>
void forward_noise(const S* x, const S* noise, S* spikes, S* pot, int64_t T, int64_t N,
                   double decay, double theta, int mode) {
  if (mode == 0) forward_kernel<S, CONVEX, GE, 0>(x, noise, spikes, pot, T, N, decay, theta);
  else if (mode == 1) forward_kernel<S, CONVEX, GE, 1>(x, noise, spikes, pot, T, N, decay, theta);
  else forward_kernel<S, CONVEX, GE, 2>(x, noise, spikes, pot, T, N, decay, theta);
}

template <typename S, bool CONVEX, bool GE, bool ESCAPE, bool DETACH>
void backward_kind(const S* g, const S* u, const S* n, S* dx, int64_t T, int64_t N, double decay,
                   double theta, double width, int kind) {
  switch (kind) {
    case 0: backward_kernel<S, CONVEX, GE, ESCAPE, DETACH, 0>(g, u, n, dx, T, N, decay, theta, width); break;
    case 1: backward_kernel<S, CONVEX, GE, ESCAPE, DETACH, 1>(g, u, n, dx, T, N, decay, theta, width); break;
    case 2: backward_kernel<S, CONVEX, GE, ESCAPE, DETACH, 2>(g, u, n, dx, T, N, decay, theta, width); break;
    case 3: backward_kernel<S, CONVEX, GE, ESCAPE, DETACH, 3>(g, u, n, dx, T, N, decay, theta, width); break;
    case 4: backward_kernel<S, CONVEX, GE, ESCAPE, DETACH, 4>(g, u, n, dx, T, N, decay, theta, width); break;
    default: backward_kernel<S, CONVEX, GE, ESCAPE, DETACH, 5>(g, u, n, dx, T, N, decay, theta, width);
  }
}

template <typename S, bool CONVEX, bool GE>
void backward_flags(const S* g, const S* u, const S* n, S* dx, int64_t T, int64_t N,
                    double decay, double theta, double width, int kind, bool escape, bool detach) {
  if (escape && detach) backward_kind<S, CONVEX, GE, true, true>(g, u, n, dx, T, N, decay, theta, width, kind);
  else if (escape) backward_kind<S, CONVEX, GE, true, false>(g, u, n, dx, T, N, decay, theta, width, kind);
  else if (detach) backward_kind<S, CONVEX, GE, false, true>(g, u, n, dx, T, N, decay, theta, width, kind);
  else backward_kind<S, CONVEX, GE, false, false>(g, u, n, dx, T, N, decay, theta, width, kind);
}
}  // namespace

void lif_forward(torch::Tensor x, c10::optional<torch::Tensor> noise, torch::Tensor spikes,
                 torch::Tensor pot_, double decay, bool convex, double theta,
                 bool ge, bool escape) {
  c10::optional<torch::Tensor> pot = pot_;
  const int64_t T = x.size(0), N = x.numel() / T;
  const int mode = noise ? (escape ? 2 : 1) : 0;
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "lif_forward", [&] {
    const scalar_t* n = noise ? noise->data_ptr<scalar_t>() : nullptr;
    scalar_t* u = pot->data_ptr<scalar_t>();
    const scalar_t* in = x.data_ptr<scalar_t>();
    scalar_t* s = spikes.data_ptr<scalar_t>();
    if (convex && ge) forward_noise<scalar_t, true, true>(in, n, s, u, T, N, decay, theta, mode);
    else if (convex) forward_noise<scalar_t, true, false>(in, n, s, u, T, N, decay, theta, mode);
    else if (ge) forward_noise<scalar_t, false, true>(in, n, s, u, T, N, decay, theta, mode);
    else forward_noise<scalar_t, false, false>(in, n, s, u, T, N, decay, theta, mode);
  });
}

void lif_backward(torch::Tensor grad, torch::Tensor pot, c10::optional<torch::Tensor> noise,
                  torch::Tensor grad_x, double decay, bool convex, double theta, bool ge,
                  bool detach_reset, int64_t kind, double width) {
  const int64_t T = pot.size(0), N = pot.numel() / T;
  AT_DISPATCH_FLOATING_TYPES(pot.scalar_type(), "lif_backward", [&] {
    const scalar_t* g = grad.data_ptr<scalar_t>();
    const scalar_t* u = pot.data_ptr<scalar_t>();
    const scalar_t* n = noise ? noise->data_ptr<scalar_t>() : nullptr;
    scalar_t* dx = grad_x.data_ptr<scalar_t>();
    const bool esc = noise.has_value();
    const int kd = (int)kind;
    if (convex && ge) backward_flags<scalar_t, true, true>(g, u, n, dx, T, N, decay, theta, width, kd, esc, detach_reset);
    else if (convex) backward_flags<scalar_t, true, false>(g, u, n, dx, T, N, decay, theta, width, kd, esc, detach_reset);
    else if (ge) backward_flags<scalar_t, false, true>(g, u, n, dx, T, N, decay, theta, width, kd, esc, detach_reset);
    else backward_flags<scalar_t, false, false>(g, u, n, dx, T, N, decay, theta, width, kd, esc, detach_reset);
  });
}
"""
_DECLARATIONS = r"""
void lif_forward(torch::Tensor x, c10::optional<torch::Tensor> noise, torch::Tensor spikes,
                 torch::Tensor pot, double decay, bool convex, double theta,
                 bool ge, bool escape);
void lif_backward(torch::Tensor grad, torch::Tensor pot, c10::optional<torch::Tensor> noise,
                  torch::Tensor grad_x, double decay, bool convex, double theta, bool ge,
                  bool detach_reset, int64_t kind, double width);
"""

_lock = threading.Lock()
_module = None
_why_not: str | None = None


def _build():
    from torch.utils.cpp_extension import load_inline
    return load_inline(name="snnbench_lif_native", cpp_sources=[_DECLARATIONS, _SOURCE],
                       functions=["lif_forward", "lif_backward"],
                       extra_cflags=["-O3", "-march=native", "-ffp-contract=off", "-fno-math-errno"],
                       verbose=False)


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
                except Exception as error:      # no compiler, no headers, no ninja: PyTorch path
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
    return all(o is None or (o.shape == reference.shape and o.stride() == reference.stride())
               for o in others)


def covers(x: torch.Tensor, decay, gain, noise, spec) -> bool:
    """Whether the kernel computes this call (module docstring)."""
    return (x.device.type == "cpu" and x.dtype in (torch.float32, torch.float64)
            and not isinstance(decay, torch.Tensor) and gain is None
            and spec.surrogate.kind in SURROGATE_CODES
            and (noise is None or noise.dtype == x.dtype) and module() is not None)


def like(reference: torch.Tensor, tensor: torch.Tensor | None) -> torch.Tensor | None:
    """``tensor`` in ``reference``'s memory layout (a copy only where it differs)."""
    if tensor is None or same_layout(reference, tensor):
        return tensor
    return torch.empty_like(reference).copy_(tensor)


def forward(x: torch.Tensor, decay: float, noise: torch.Tensor | None, spec,
            potentials: torch.Tensor | None) -> torch.Tensor:
    spikes = torch.empty_like(x)
    potentials = torch.empty_like(x) if potentials is None else potentials   # no_grad: scratch
    module().lif_forward(x, noise, spikes, potentials, float(decay), spec.convex,
                         float(spec.theta), spec.ge, spec.escape)
    return spikes


def backward(grad: torch.Tensor, potentials: torch.Tensor, noise: torch.Tensor | None,
             decay: float, spec) -> torch.Tensor:
    grad_x = torch.empty_like(potentials)
    module().lif_backward(like(potentials, grad), potentials, noise if spec.escape else None,
                          grad_x, float(decay), spec.convex, float(spec.theta), spec.ge,
                          spec.detach_reset, SURROGATE_CODES[spec.surrogate.kind],
                          float(spec.surrogate.width))
    return grad_x
