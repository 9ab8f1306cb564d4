-- Chip-bound products: each record is sealed for one named chip (format 0x02). The chip a
-- record was sealed for is kept, so that a remap can seal it again for the same chip.
ALTER TABLE product_codes ADD COLUMN chip_bound BIGINT NOT NULL DEFAULT 0 CHECK (chip_bound IN (0, 1));
ALTER TABLE factory_records ADD COLUMN chip_id TEXT;
