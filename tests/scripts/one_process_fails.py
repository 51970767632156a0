"""Process 1 refuses its input at once; process 0 waits for it in a collective (and would wait
forever): the launcher must stop it and exit with process 1's status."""

import argparse

from jaxlab import cli
from jaxlab.errors import ConfigError


def main(args: argparse.Namespace) -> None:
    import jax
    from jax.experimental import multihost_utils

    if jax.process_index() == 1:
        raise ConfigError("process 1 fails now")
    multihost_utils.sync_global_devices("never reached by process 1")


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    cli.add_run_args(parser)
    cli.run(main, parser)
