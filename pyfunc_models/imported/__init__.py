"""Bring-your-own-code: folders of plain Python (MMF or Neomaril style) as registered models."""
