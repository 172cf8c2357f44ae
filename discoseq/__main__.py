"""``python -m discoseq``: the ``discoseq`` command (analyze, benchmark, demo)."""

from discoseq.cli.main import main

if __name__ == "__main__":
    main(prog_name="discoseq")
