"""NaCl key custody: tenant vault, data keys, field sealing, blind index, master key."""
