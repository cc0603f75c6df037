"""What every layer may use: files written atomically, the process group as a value, the precision and compile
switches (scoped, restoring), and image metrics."""
