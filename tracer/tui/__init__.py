"""The Textual inspector: browse recorded runs layer by layer, diff them (never imports torch)."""
