"""Weight shapes of a WideResNet (Zagoruyko & Komodakis 2016) without building the model."""


def wide_resnet_weight_shapes(depth: int = 34, widen_factor: int = 10, num_classes: int = 10) -> list[tuple[int, ...]]:
    if (depth - 4) % 6:
        raise ValueError(f"depth must be 6n + 4, got {depth}")
    blocks = (depth - 4) // 6
    widths = [16, 16 * widen_factor, 32 * widen_factor, 64 * widen_factor]
    shapes = [(widths[0], 3, 3, 3)]
    for group in range(3):
        c_in, c_out = widths[group], widths[group + 1]
        for block in range(blocks):
            first_in = c_in if block == 0 else c_out
            shapes += [(c_out, first_in, 3, 3), (c_out, c_out, 3, 3)]
            if block == 0 and c_in != c_out:
                shapes.append((c_out, c_in, 1, 1))
    return shapes + [(num_classes, widths[3])]
