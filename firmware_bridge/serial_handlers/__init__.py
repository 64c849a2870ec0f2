"""pyserial URL handlers of EdgeFF (pyserial finds `protocol_<scheme>` modules in the packages listed in
serial.protocol_handler_packages; firmware_bridge/driver.py adds this one): faults:// (protocol_faults.py)."""
