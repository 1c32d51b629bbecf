"""Installs the simulated CUDA device (tests/sim_device.py) in every Python process started with
DELTAIRIS_SIMULATED_CUDA=1 and this folder on PYTHONPATH (``sim_device.sim_env()``); with
DELTAIRIS_SIM_REPORT=<path>, the main process writes there at exit how many operations ran on the
device and the host syncs it counted; with DELTAIRIS_SIM_KILL_AFTER_EPOCH=<n>, the run SIGKILLs its
process group once epoch n is saved (a kill between epochs, for a resume on the device)."""

import os

if os.environ.get("DELTAIRIS_SIMULATED_CUDA") == "1":
    import atexit
    import json

    import sim_device

    sim_device.install()
    report = os.environ.get("DELTAIRIS_SIM_REPORT")
    main_pid = os.environ.setdefault("DELTAIRIS_SIM_MAIN_PID", str(os.getpid()))  # children inherit it

    def _write_report() -> None:
        if report and main_pid == str(os.getpid()):  # not the env workers nor the forkserver
            with open(report, "w") as file:
                json.dump({"ops": sim_device.OPS.total(), "syncs": dict(sim_device.SYNCS)}, file)

    atexit.register(_write_report)

    kill_after = os.environ.get("DELTAIRIS_SIM_KILL_AFTER_EPOCH")
    if kill_after:
        import signal

        from torchrl_deltairis import trainer as _trainer

        _run_epoch = _trainer.Trainer.run_epoch

        def run_epoch(self, epoch):
            metrics = _run_epoch(self, epoch)
            if epoch == int(kill_after):
                _write_report()
                os.killpg(os.getpgid(0), signal.SIGKILL)
            return metrics

        _trainer.Trainer.run_epoch = run_epoch
