"""Exchange types: one small module each behind exchanges.base.ExchangeType."""
