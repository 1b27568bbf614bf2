"""The FIND model: encoders + interface + heads, driven by prototypes."""
