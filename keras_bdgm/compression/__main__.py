"""`python -m keras_bdgm.compression`: the `keras-bdgm-compress` command (see its `cli`)."""

from keras_bdgm.compression.cli import main

if __name__ == "__main__":
    main()
