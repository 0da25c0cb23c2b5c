"""Write-back: commands that change d6 (notes, promises to pay), stored and sent once (docs/commands.md)."""
