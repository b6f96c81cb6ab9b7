// How the kernels split a contiguous tensor of n elements: rows of `inner` elements, row r
// belonging to channel r % channels of sample r / channels (e.g. [B, C, S] with inner = S).
// Noise injection: a row shares one alpha; element-wise alpha is one row of n. PGD step: a row
// shares one sample's step/eps and one channel's bounds. Each row is cut into pieces of at most
// `piece` elements, the unit of parallel work, so a piece never crosses a row and per-row or
// per-sample sums are deterministic partial sums.
#pragma once

#include <cstdint>

#include "common/macros.h"

namespace rk {

struct PieceLayout {
  int64_t n, channels, inner, rows, pieces_per_row, piece;
  bool elementwise;

  RK_HOST_DEVICE PieceLayout(int64_t numel, int64_t channels_, int64_t inner_, bool elementwise_, int64_t piece_)
      : n(numel), channels(channels_), inner(elementwise_ ? numel : inner_), piece(piece_), elementwise(elementwise_) {
    rows = inner > 0 ? n / inner : 0;
    pieces_per_row = (inner + piece - 1) / piece;
  }
  RK_HOST_DEVICE int64_t pieces() const { return rows * pieces_per_row; }
  RK_HOST_DEVICE int64_t row_of(int64_t p) const { return p / pieces_per_row; }
  RK_HOST_DEVICE int64_t begin_of(int64_t p) const { return row_of(p) * inner + (p % pieces_per_row) * piece; }
  RK_HOST_DEVICE int64_t end_of(int64_t p) const {
    const int64_t end = begin_of(p) + piece, row_end = (row_of(p) + 1) * inner;
    return end < row_end ? end : row_end;
  }
  RK_HOST_DEVICE int64_t channel_of(int64_t p) const { return elementwise ? 0 : row_of(p) % channels; }
  RK_HOST_DEVICE int64_t sample_of(int64_t p) const { return row_of(p) / channels; }
};

}  // namespace rk
