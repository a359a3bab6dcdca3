"""Reports: plots, HTML/Markdown rendering, exports."""
