"""The hostile site's spider."""
