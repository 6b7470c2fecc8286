"""The zoo's spiders, one module per docs example."""
