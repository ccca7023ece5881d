"""Building blocks shared by the models; nothing here knows about data, training or the CLI."""
