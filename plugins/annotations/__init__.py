"""Real annotation files (class lists, official CSVs) the dataset plugins read; see README.md."""
