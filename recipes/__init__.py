"""Recipes: typed training configurations (see cnnedge.recipe)."""
