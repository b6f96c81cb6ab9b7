// The shared random streams for CPU kernels: vectorised fills of small buffers, and chunked
// access for kernels that consume noise elementwise.
#pragma once

#include <algorithm>
#include <cstdint>

namespace rk {

constexpr int64_t kNoiseChunk = 1024;

// out[i] = philox_normal4_at(seed, offset + i) for i < n: the four-per-block normal stream
// (tl.randn4x), vectorised with AVX2/AVX-512 clones (philox_cpu.cpp).
void fill_normal4(float* out, int64_t n, uint64_t seed, uint64_t offset);

// out[i] = philox_uniform4_at(seed, offset + i) for i < n: the four-per-block uniform stream.
void fill_uniform4(float* out, int64_t n, uint64_t seed, uint64_t offset);

// Calls body(start, count, eta) for consecutive chunks of [begin, end), where
// eta[j] = philox_normal4_at(seed, offset + start + j).
template <typename Body>
inline void for_each_normal_chunk(int64_t begin, int64_t end, uint64_t seed, uint64_t offset, Body&& body) {
  float eta[kNoiseChunk];
  for (int64_t start = begin; start < end; start += kNoiseChunk) {
    const int64_t count = std::min(kNoiseChunk, end - start);
    fill_normal4(eta, count, seed, offset + static_cast<uint64_t>(start));
    body(start, count, eta);
  }
}

}  // namespace rk
