"""Datasets: generated dSprites (``dsprites``) and torchvision datasets through the data site (``vision``)."""
