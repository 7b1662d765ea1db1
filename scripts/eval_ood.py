"""Evaluate MOON (and any OpenOOD-layout) runs with OpenOOD's Evaluator — OpenOOD's eval_ood.py interface.

    python scripts/eval_ood.py --root results/<exp> --postprocessor msp ebo knn react moon \
        --id-data mnist6 --save-csv [--save-score] [--data-root ./data] [--config-root DIR] [--network NAME]

``<root>/s*/`` hold ``best.ckpt`` (and ``moon_net.ckpt`` + ``config.yml`` for MOON runs); ``--save-csv``
writes ``<root>/ood/<pp>.csv`` with "mean ± std" over the runs, as OpenOOD's script. Needs OpenOOD
(README, OpenOOD section); details in ``openood_moon/engines/openood/evaluate.py``.
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from openood_moon.engines.openood.evaluate import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
