"""Interactive explorers for the sgmteach tutorials (ipywidgets + plotly)."""

__all__: list[str] = []
