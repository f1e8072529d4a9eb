from tokentrail.cli import main

# Guarded: worker processes started with "spawn" import the main module as __mp_main__.
if __name__ == "__main__":
    raise SystemExit(main())
