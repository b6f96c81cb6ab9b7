"""Our own kernels. The C++/CUDA ones live in the compiled extension (csrc/)."""
