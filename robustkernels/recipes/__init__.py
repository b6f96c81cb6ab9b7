"""The experiments behind the commands: the digits demo, the CIFAR-10 seed report and the
training-method comparison (library calls only; the command line wires options to them)."""
