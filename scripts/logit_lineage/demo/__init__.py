"""The embedded default's inputs: generated conversations and a small local teacher."""
