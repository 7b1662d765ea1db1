"""The per-run log file (``<run_dir>/log.txt``) shared by both engines."""
import logging
import os


def run_logger(run_dir) -> logging.Logger:
    """A logger writing only to ``<run_dir>/log.txt`` (not to the console), one per run folder."""
    log = logging.getLogger(f"openood_moon.run.{os.path.abspath(str(run_dir))}")
    log.handlers.clear()
    log.setLevel(logging.INFO)
    log.propagate = False
    handler = logging.FileHandler(os.path.join(str(run_dir), "log.txt"))
    handler.setFormatter(logging.Formatter("%(asctime)s %(message)s"))
    log.addHandler(handler)
    return log
