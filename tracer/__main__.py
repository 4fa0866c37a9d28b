"""``python -m tracer``: the same as the ``tracer`` command (used under ``torchrun -m tracer``)."""

from tracer.cli import main

if __name__ == "__main__":
    main()
