"""Models: one registry entry per architecture, the reports' small CNNs, pretrained torchvision backbones."""
