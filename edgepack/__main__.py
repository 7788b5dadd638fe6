"""``python -m edgepack``: the same CLI as the ``edgepack`` console script."""

from edgepack.cli import main

if __name__ == "__main__":
    main(prog_name="edgepack")
