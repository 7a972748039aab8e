"""The run loop: launching torchrun phases, waiting for the sentinel, killing the tree, going on."""
