"""A small C++ kernel for the fused LIF loop on the CPU: one pass over memory per tensor.

The PyTorch fused loop (``snnbench.neurons.fused``) makes ~3 elementwise passes per step
forward and ~6 backward, each reading and writing whole ``[B, ...]`` slices; this kernel walks
every neuron's T steps in registers (a block of neighbours at a time), so forward reads the
input and writes spikes and ``u_t`` once, and backward reads the output gradient and ``u_t``
and writes the input gradient once: the memory-traffic bound of docs/performance.md.

Built at first use with ``torch.utils.cpp_extension.load_inline`` (a C++ compiler and ninja;
cached by PyTorch under ``TORCH_EXTENSIONS_DIR``, one build per CPU model and flags), with
OpenMP where the compiler has it (``at::parallel_for`` then uses torch's threads; else one
thread). The inner loops have no branch, so the compiler vectorises them. It covers every
neuron with a fused path (LIF, Noisy-LIF, Het, RandHet, RandHet*, DLIF; tet or convex form;
input, decay and gain gradients) with the registered surrogates, on float32/float64 CPU
tensors. Row-major draws (noise, per-step or per-sample decays) under a channels_last input are
read in place: each block of pixels transposes its draws into a buffer in cache (8 x 8 float
tiles in AVX registers). Draws in any other layout are copied into the input's first (a tiled
transpose), and a decay shared by every sample (Het) is read modulo its size.
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
#include <type_traits>
#include <vector>
#if defined(__AVX__)
#include <immintrin.h>
#endif

namespace {
constexpr int64_t BLOCK = 4096;   // neighbours per block (args() says why)

// One fused call. Tensors are [T, N] in one memory layout (N = one step's values); the decay is
// a float or a tensor (per step: T stride N, else held over T: stride 0); gains one per step.
// gather_c > 0: the input is channels_last (C = gather_c channels of gather_p pixels per
// sample) and the noise (gather_noise) or the decay (gather_decay) is row-major: read in place.
template <typename S>
struct Args {
  const S* x; const S* noise; const S* decay; const S* gain;
  S* spikes; S* pot;
  const S* grad; S* grad_x; S* grad_k; double* grad_p;
  int64_t T, N, decay_tstride, decay_period, block, gather_c, gather_p;
  double k, theta, width;
  bool convex, ge, detach, per_step_k_grad, gather_noise, gather_decay;
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

// Blocks of neighbours; where draws are gathered, whole pixels of one sample.
template <typename S>
inline int64_t block_length(const Args<S>& a, int64_t b0, int64_t end) {
  int64_t n = std::min(a.block, end - b0);
  if (a.gather_c) {
    const int64_t sample = a.gather_c * a.gather_p;
    n = std::min(n, sample - b0 % sample);
  }
  return n;
}

// Transposes an 8 x 8 tile of floats: row i (src + i * sstride) becomes column i
// (dst + j * dstride + i): unpack pairs, shuffle quads, swap 128-bit halves.
#if defined(__AVX__)
inline void transpose8x8(const float* src, int64_t sstride, float* dst, int64_t dstride) {
  __m256 r[8], t[8], q[8];
  for (int i = 0; i < 8; ++i) r[i] = _mm256_loadu_ps(src + i * sstride);
  for (int i = 0; i < 8; i += 2) {
    t[i] = _mm256_unpacklo_ps(r[i], r[i + 1]);
    t[i + 1] = _mm256_unpackhi_ps(r[i], r[i + 1]);
  }
  for (int h = 0; h < 8; h += 4) {
    q[h] = _mm256_shuffle_ps(t[h], t[h + 2], _MM_SHUFFLE(1, 0, 1, 0));
    q[h + 1] = _mm256_shuffle_ps(t[h], t[h + 2], _MM_SHUFFLE(3, 2, 3, 2));
    q[h + 2] = _mm256_shuffle_ps(t[h + 1], t[h + 3], _MM_SHUFFLE(1, 0, 1, 0));
    q[h + 3] = _mm256_shuffle_ps(t[h + 1], t[h + 3], _MM_SHUFFLE(3, 2, 3, 2));
  }
  for (int j = 0; j < 4; ++j) {
    _mm256_storeu_ps(dst + j * dstride, _mm256_permute2f128_ps(q[j], q[j + 4], 0x20));
    _mm256_storeu_ps(dst + (j + 4) * dstride, _mm256_permute2f128_ps(q[j], q[j + 4], 0x31));
  }
}
#endif

// buf[q * C + c] = src[c * P + q] for q < pixels, c < C; float tiles of 8 x 8 in registers.
template <typename S>
inline void transpose_into(const S* __restrict__ src, int64_t C, int64_t P, int64_t pixels,
                           S* __restrict__ buf) {
  int64_t c8 = 0, q8 = 0;
#if defined(__AVX__)
  if constexpr (std::is_same_v<S, float>) {
    c8 = C - C % 8; q8 = pixels - pixels % 8;
    for (int64_t c = 0; c < c8; c += 8)
      for (int64_t q = 0; q < q8; q += 8) transpose8x8(src + c * P + q, P, buf + q * C + c, C);
  }
#endif
  for (int64_t c = 0; c < C; ++c)           // what the tiles leave: the last channels, pixels
    for (int64_t q = c < c8 ? q8 : 0; q < pixels; ++q) buf[q * C + c] = src[c * P + q];
}

// A row-major [C, P] step of draws read for the channels_last block [pixels, C] at b0: a small
// transpose into a buffer that stays in cache, instead of copying the whole tensor into the
// input's layout first (which costs two more passes over memory).
template <typename S>
inline const S* gathered(const Args<S>& a, const S* step, int64_t b0, int64_t n, S* __restrict__ buf) {
  const int64_t C = a.gather_c, P = a.gather_p, sample = C * P;
  transpose_into(step + (b0 / sample) * sample + (b0 % sample) / C, C, P, n / C, buf);
  return buf;
}

// One run of neighbours at one step, its own function so that restrict-qualified parameters
// tell the vectoriser nothing aliases.
template <typename S, int NOISE, bool KT, bool SAVE>
inline void forward_run(int64_t n, const S* __restrict__ xt, const S* __restrict__ nt,
                        const S* __restrict__ kt, S* __restrict__ st, S* __restrict__ ut,
                        S* __restrict__ v, S p, S k0, S c0, S cv, S theta, bool ge) {
  for (int64_t j = 0; j < n; ++j) {
    const S k = KT ? kt[j] : k0;
    const S c = KT ? S(1) - cv * k : c0;
    const S drive = c * (p * xt[j]);
    S u = k * v[j] + drive;
    if (NOISE == 1) u = u + nt[j];
    const S z = NOISE == 2 ? u + nt[j] : u;
    const S s = S((z > theta) | (ge & (z == theta)));
    st[j] = s;
    if (SAVE) ut[j] = u;
    v[j] = u - u * s;
  }
}

// The PyTorch loop's operations in its order: current = p_t x; drive = (1 - k) current
// (convex); u = k v + drive; (+ diffusive noise); s = H(z - theta); v = u - u s. No branch in
// the inner loop (so it vectorises): v starts at 0 (u_0 = k 0 + drive = drive, exactly), the
// tet form's drive factor is 1 - 0 k, and the compare's >= / > is one expression.
// NOISE: 0 none, 1 diffusive (into u), 2 escape (into what fires); KT: the decay is a tensor.
template <typename S, int NOISE, bool KT, bool SAVE>
void forward_kernel(const Args<S>& a) {
  const S theta = S(a.theta), k0 = S(a.k), c0 = a.convex ? S(1.0 - a.k) : S(1);
  const S cv = a.convex ? S(1) : S(0);
  const bool ge = a.ge, gn = NOISE && a.gather_noise, gk = KT && a.gather_decay;
  const bool gk_held = gk && a.decay_tstride == 0;
  const int64_t unit = a.gather_c ? a.gather_c : 1;
  at::parallel_for(0, a.N / unit, std::max<int64_t>(1, a.block / unit), [&](int64_t ub, int64_t ue) {
    const int64_t begin = ub * unit, end = ue * unit, size = std::min(a.block, end - begin);
    std::vector<S> buffers(3 * size);
    S* __restrict__ v = buffers.data();
    S* nbuf = v + size;
    S* kbuf = nbuf + size;
    for (int64_t b0 = begin, n = 0; b0 < end; b0 += n) {
      n = block_length(a, b0, end);
      std::fill(v, v + n, S(0));
      if (gk_held) gathered(a, a.decay, b0, n, kbuf);   // a held decay: once per block
      for (int64_t t = 0; t < a.T; ++t) {
        const int64_t o = t * a.N + b0;
        const S* xt = a.x + o;
        const S* nt = !NOISE ? nullptr : gn ? gathered(a, a.noise + t * a.N, b0, n, nbuf) : a.noise + o;
        const S* kbase = KT ? a.decay + t * a.decay_tstride : nullptr;
        S* st = a.spikes + o;
        S* ut = SAVE ? a.pot + o : nullptr;
        const S p = a.gain ? a.gain[t] : S(1);
        for (int64_t j0 = 0; j0 < n;) {      // runs within one period of the decay
          const int64_t off = KT && !gk ? (b0 + j0) % a.decay_period : 0;
          const int64_t j1 = KT && !gk ? std::min(n, j0 + a.decay_period - off) : n;
          const S* kt = !KT ? nullptr : gk ? (gk_held ? kbuf : gathered(a, kbase, b0, n, kbuf))
                                   : kbase + off - j0;
          forward_run<S, NOISE, KT, SAVE>(
              j1 - j0, xt + j0, NOISE ? nt + j0 : nullptr, KT ? kt + j0 : nullptr, st + j0,
              SAVE ? ut + j0 : nullptr, v + j0, p, k0, c0, cv, theta, ge);
          j0 = j1;
        }
      }
    }
  });
}

template <typename S, int NOISE, bool KT>
void forward_save(const Args<S>& a) {
  if (a.pot) forward_kernel<S, NOISE, KT, true>(a); else forward_kernel<S, NOISE, KT, false>(a);
}

// One run of neighbours at one step of the backward (below); returns sum du c I for the gain.
template <typename S, bool ESCAPE, bool KT, int KIND, bool WANT_K, bool WANT_P>
inline double backward_run(int64_t n, const S* __restrict__ gt, const S* __restrict__ ut,
                           const S* __restrict__ nt, const S* __restrict__ kt,
                           const S* __restrict__ xt, const S* __restrict__ up,
                           const S* __restrict__ np, S* __restrict__ dxt, S* __restrict__ kd,
                           S* __restrict__ carry, S p, S k0, S c0, S cv, S theta, S w,
                           S keep_reset, S later, bool gt_fire) {
  double dp = 0.0;
  // the gain's sum may be reordered (OpenMP's simd reduction): vectorised with it, scalar without
#pragma omp simd reduction(+ : dp)
  for (int64_t j = 0; j < n; ++j) {
    const S u = ut[j];
    const S z = ESCAPE ? u + nt[j] : u;
    const S silent = S((z < theta) | (gt_fire & (z == theta)));
    const S dv = carry[j];
    const S ds = gt[j] - keep_reset * (dv * u);
    const S du = dv * silent + ds * surrogate<S>(z - theta, w, KIND);
    const S k = KT ? kt[j] : k0;
    const S c = KT ? S(1) - cv * k : c0;
    dxt[j] = (du * c) * p;
    if (WANT_P) dp += double(du * c * xt[j]);
    if (WANT_K) {
      const S zp = ESCAPE ? up[j] + np[j] : up[j];
      const S sp = S((zp < theta) | (gt_fire & (zp == theta)));
      kd[j] += later * (du * (up[j] * sp)) - cv * (du * (p * xt[j]));
    }
    carry[j] = du * k;
  }
  return dp;
}

// BPTT through the hard reset (snnbench/neurons/fused.py docstring), per neuron, t = T-1..0:
// du = dv (1 - s) + (ds - [not detach] dv u) g(z - theta), dv = du_{t+1} k_{t+1};
// dI = du c p; dk_t = du (v_{t-1} - [convex] p I); dp_t = sum du c I. Branch-free like the
// forward: the t = 0 and tet-form terms are multiplied by 0 (reading valid memory), and the
// decay gradient is accumulated (the caller zero-fills a per-step one).
template <typename S, bool ESCAPE, bool KT, int KIND, bool WANT_K, bool WANT_P>
void backward_kernel(const Args<S>& a) {
  const S theta = S(a.theta), w = S(a.width), k0 = S(a.k), c0 = a.convex ? S(1.0 - a.k) : S(1);
  const S cv = a.convex ? S(1) : S(0);
  const S keep_reset = a.detach ? S(0) : S(1);
  const bool gt_fire = !a.ge, gn = ESCAPE && a.gather_noise, gk = KT && a.gather_decay;
  const bool gk_held = gk && a.decay_tstride == 0;
  TORCH_CHECK(!(WANT_K && gn), "lif_backward: decay gradient with gathered escape noise");
  std::mutex lock;
  const int64_t unit = a.gather_c ? a.gather_c : 1;
  at::parallel_for(0, a.N / unit, std::max<int64_t>(1, a.block / unit), [&](int64_t ub, int64_t ue) {
    const int64_t begin = ub * unit, end = ue * unit, size = std::min(a.block, end - begin);
    std::vector<S> buffers(4 * size);
    S* __restrict__ carry = buffers.data();       // du_{t+1} k_{t+1}
    S* __restrict__ held = carry + size;          // held decay's gradient
    S* nbuf = held + size;
    S* kbuf = nbuf + size;
    std::vector<double> partial(WANT_P ? a.T : 0, 0.0);
    for (int64_t b0 = begin, n = 0; b0 < end; b0 += n) {
      n = block_length(a, b0, end);
      std::fill(carry, carry + n, S(0));
      std::fill(held, held + n, S(0));
      if (gk_held) gathered(a, a.decay, b0, n, kbuf);
      for (int64_t t = a.T - 1; t >= 0; --t) {
        const int64_t o = t * a.N + b0;
        const S* gt = a.grad + o;
        const S* ut = a.pot + o;
        const S* nt = !ESCAPE ? nullptr : gn ? gathered(a, a.noise + t * a.N, b0, n, nbuf) : a.noise + o;
        const S* kbase = KT ? a.decay + t * a.decay_tstride : nullptr;
        const S* xt = a.x ? a.x + o : ut;
        const S* up = t > 0 ? ut - a.N : ut;
        const S* np = ESCAPE && t > 0 && !gn ? nt - a.N : nt;  // (gn: no decay gradient)
        S* dxt = a.grad_x + o;
        S* kd = !WANT_K ? nullptr : a.per_step_k_grad ? a.grad_k + o : held;
        const S p = a.gain ? a.gain[t] : S(1);
        const S later = t > 0 ? S(1) : S(0);
        double dp = 0.0;
        for (int64_t j0 = 0; j0 < n;) {      // runs within one period of the decay
          const int64_t off = KT && !gk ? (b0 + j0) % a.decay_period : 0;
          const int64_t j1 = KT && !gk ? std::min(n, j0 + a.decay_period - off) : n;
          const S* kt = !KT ? nullptr : gk ? (gk_held ? kbuf : gathered(a, kbase, b0, n, kbuf))
                                   : kbase + off - j0;
          dp += backward_run<S, ESCAPE, KT, KIND, WANT_K, WANT_P>(
              j1 - j0, gt + j0, ut + j0, ESCAPE ? nt + j0 : nullptr, KT ? kt + j0 : nullptr,
              xt + j0, up + j0, ESCAPE ? np + j0 : nullptr, dxt + j0, WANT_K ? kd + j0 : nullptr,
              carry + j0, p, k0, c0, cv, theta, w, keep_reset, later, gt_fire);
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
             bool convex, double theta, bool ge, int64_t gather_c, int64_t gather_p,
             bool gather_noise, bool gather_decay) {
  Args<S> a{};
  a.T = like.size(0); a.N = like.numel() / a.T;
  // Each block streams T slices of each tensor. Runs of 4096 neighbours, measured with OpenMP
  // on two threads (2-core AMD EPYC; LIF, Het, DLIF, Noisy-LIF, two rounds): 1.2-1.3x the
  // add-bandwidth bound at T = 4 and 8, as 65536; 256 gave the same at T = 4 but 1.3-1.6x at
  // T = 8 (one thread, on the earlier machine, 256 had been the better choice up to T = 4).
  a.block = BLOCK;
  a.decay = ptr<S>(decay_t); a.decay_tstride = per_step ? a.N : 0; a.gain = ptr<S>(gain);
  // a held decay of one sample's size repeats along the batch: it is read modulo its size
  a.decay_period = decay_t && !per_step ? decay_t->numel() : a.N;
  a.k = decay; a.convex = convex; a.theta = theta; a.ge = ge;
  a.gather_noise = gather_noise; a.gather_decay = gather_decay;
  a.gather_c = gather_noise || gather_decay ? gather_c : 0; a.gather_p = gather_p;
  // gathered blocks: 128 whole pixels, so each channel's draws are 8 cache lines in a row
  // (measured: 16 pixels took 1.5x the time of reading draws already in the input's layout,
  // 64-128 pixels 1.1x, whole 32 x 32 samples 1.2x)
  if (a.gather_c) a.block = 128 * a.gather_c;
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
                 double decay, bool convex, double theta, bool ge, bool escape,
                 int64_t gather_c, int64_t gather_p, bool gather_noise, bool gather_decay) {
  const int mode = noise ? (escape ? 2 : 1) : 0;
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "lif_forward", [&] {
    Args<scalar_t> a = args<scalar_t>(x, decay_t, per_step, gain, decay, convex, theta, ge,
                                      gather_c, gather_p, gather_noise, gather_decay);
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
                  bool ge, bool detach_reset, int64_t kind, double width,
                  int64_t gather_c, int64_t gather_p, bool gather_noise, bool gather_decay) {
  AT_DISPATCH_FLOATING_TYPES(pot.scalar_type(), "lif_backward", [&] {
    Args<scalar_t> a = args<scalar_t>(pot, decay_t, per_step, gain, decay, convex, theta, ge,
                                      gather_c, gather_p, gather_noise, gather_decay);
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
                 double decay, bool convex, double theta, bool ge, bool escape,
                 int64_t gather_c, int64_t gather_p, bool gather_noise, bool gather_decay);
void lif_backward(torch::Tensor grad, torch::Tensor pot, c10::optional<torch::Tensor> noise,
                  c10::optional<torch::Tensor> decay_t, bool per_step,
                  c10::optional<torch::Tensor> gain, c10::optional<torch::Tensor> x,
                  torch::Tensor grad_x, c10::optional<torch::Tensor> grad_k,
                  c10::optional<torch::Tensor> grad_p, double decay, bool convex, double theta,
                  bool ge, bool detach_reset, int64_t kind, double width,
                  int64_t gather_c, int64_t gather_p, bool gather_noise, bool gather_decay);
"""

_lock = threading.Lock()
_module = None
_why_not: str | None = None
_threads = False


def _build():
    global _threads
    # cpp_extension logs a CUDA_HOME warning on CPU-only machines at import: not ours to show
    logger = logging.getLogger("torch.utils.cpp_extension")
    previous = logger.level
    logger.setLevel(logging.ERROR)
    try:
        from torch.utils.cpp_extension import load_inline

        try:
            built, _threads = _load(load_inline, openmp=True), True
        except Exception:  # noqa: BLE001 - a compiler without OpenMP (Apple's clang): one thread
            built, _threads = _load(load_inline, openmp=False), False
        return built
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


def _load(load_inline, openmp: bool):
    """With ``openmp``, ``at::parallel_for`` splits the kernel over torch's threads (without
    ``-fopenmp`` it compiles to one thread: measured 1.5x the two-thread bound for LIF here)."""
    return load_inline(
        name=f"snnbench_lif_native_{_cpu_tag()}{'_omp' if openmp else ''}",
        cpp_sources=[_DECLARATIONS, _SOURCE],
        functions=["lif_forward", "lif_backward", "channels_last_copy"],
        extra_cflags=["-O3", "-march=native", "-ffp-contract=off", "-fno-math-errno"]
        + (["-fopenmp"] if openmp else []),
        extra_ldflags=["-fopenmp"] if openmp else [],
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
        threads = "OpenMP, torch's threads" if _threads else "one thread: no OpenMP"
        return f"native C++ kernel (built with load_inline; {threads})"
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

    Where the kernel cannot read draws in place (:func:`draws`), a row-major tensor under a
    channels_last ``reference`` is copied by the kernel's tiled transpose.
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


def draws(reference: torch.Tensor, tensor: torch.Tensor | None) -> torch.Tensor | None:
    """Noise or decays as the kernel takes them: as they are where it reads them in place
    (``reference``'s layout, or row-major under a channels_last ``reference``), else
    :func:`like`."""
    if tensor is None or same_layout(reference, tensor) or _read_in_place(reference, tensor):
        return tensor
    return like(reference, tensor)


def _read_in_place(reference: torch.Tensor, tensor: torch.Tensor | None) -> bool:
    """Row-major draws of ``reference``'s shape under a channels_last ``reference``: the kernel
    gathers each block's draws as it goes (no copy of the whole tensor)."""
    return (
        tensor is not None
        and tensor.shape == reference.shape
        and tensor.dtype == reference.dtype
        and tensor.is_contiguous()
        and not same_layout(reference, tensor)
        and _channels_last(reference)
    )


def _gather(x: torch.Tensor, noise: torch.Tensor | None, decay) -> tuple[int, int, bool, bool]:
    """The kernel's ``gather_*`` arguments: channels, pixels, and which draws it reads in place."""
    tensor_decay = decay if isinstance(decay, torch.Tensor) else None
    in_place_noise = _read_in_place(x, noise)
    in_place_decay = _read_in_place(x, tensor_decay) or _read_in_place(x[0], tensor_decay)
    channels, pixels = x.shape[-3], x.shape[-2] * x.shape[-1]
    return channels, pixels, in_place_noise, in_place_decay


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
        return draws(x, decay)
    sample = x[0, 0]
    if decay.dim() <= sample.dim() or (decay.dim() == x[0].dim() and decay.shape[0] == 1):
        return like(
            sample,
            decay.reshape(decay.shape[-sample.dim() :]) if decay.dim() > sample.dim() else decay,
        )
    return draws(x[0], decay)


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
    noise, tensor_decay = draws(x, noise), full_decay(x, decay, spec)
    module().lif_forward(
        x,
        noise,
        tensor_decay,
        spec.decay_per_step,
        None if gain is None else gain.contiguous(),
        spikes,
        potentials,
        scalar,
        spec.convex,
        float(spec.theta),
        spec.ge,
        spec.escape,
        *_gather(x, noise, tensor_decay),
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
    if want_k:  # per neuron and sample, summed over T (held) or not (per step, accumulated)
        grad_k = (
            torch.zeros_like(potentials) if spec.decay_per_step else torch.empty_like(potentials[0])
        )
    noise = noise if spec.escape else None
    grad_p = potentials.new_zeros(potentials.shape[0], dtype=torch.float64) if want_p else None
    scalar = 0.0 if isinstance(decay, torch.Tensor) else float(decay)
    module().lif_backward(
        like(potentials, grad),
        potentials,
        noise,
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
        *_gather(potentials, noise, tensor_decay),
    )
    if grad_k is not None:
        grad_k = grad_k.sum_to_size(decay.shape)  # broadcast decays: summed back
    if grad_p is not None:
        grad_p = grad_p.to(gain.dtype)
    return (grad_x if want_x else None), grad_k, grad_p
