"""Raw layer: source-shaped, lossless extracts of the files in the landing folders."""
