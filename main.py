"""Train and evaluate MOON like OpenOOD: ``python main.py --config a.yml b.yml … --key.sub value``.

With no config at all, or none that sets the dataset / network, it runs the embedded default:
sparse RigL 90 % + MOON on the offline MNIST-6 benchmark with a small CNN.
"""
import sys

from openood_moon.cli import main

if __name__ == "__main__":
    sys.exit(main())
