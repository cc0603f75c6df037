"""Rendering a trained model: the Renderer and its settings, chunks and their sizes, views of a scene timed and shared
out over processes, and the files they become (PNG frames, MP4 videos, depth maps)."""
