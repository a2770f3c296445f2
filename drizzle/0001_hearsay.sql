ALTER TABLE `known_peers` ADD `verified` integer DEFAULT false NOT NULL;
--> statement-breakpoint
-- Peers that told us about themselves (an exchange with them) are verified; what other peers told us is hearsay.
UPDATE `known_peers` SET `verified` = 1 WHERE `source` = 0;
