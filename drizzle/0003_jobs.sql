CREATE TABLE `job_logs` (
	`job_id` text NOT NULL,
	`role` text NOT NULL,
	`seq` integer NOT NULL,
	`stream` integer NOT NULL,
	`data` blob NOT NULL,
	`at` integer NOT NULL,
	PRIMARY KEY(`job_id`, `role`, `seq`)
);
--> statement-breakpoint
CREATE TABLE `jobs` (
	`id` text NOT NULL,
	`role` text NOT NULL,
	`peer_id` text NOT NULL,
	`service_id` text NOT NULL,
	`service_name` text NOT NULL,
	`parameters` text NOT NULL,
	`state` text NOT NULL,
	`reason` text,
	`message` text,
	`exit_code` integer,
	`signal` text,
	`outputs` text DEFAULT '[]' NOT NULL,
	`stdout_bytes` integer DEFAULT 0 NOT NULL,
	`stderr_bytes` integer DEFAULT 0 NOT NULL,
	`truncated` integer DEFAULT false NOT NULL,
	`log_seq` integer DEFAULT 0 NOT NULL,
	`workflow_id` text,
	`created_at` integer NOT NULL,
	`started_at` integer,
	`finished_at` integer,
	PRIMARY KEY(`id`, `role`)
);
--> statement-breakpoint
CREATE INDEX `jobs_created` ON `jobs` (`created_at`);--> statement-breakpoint
CREATE INDEX `jobs_state` ON `jobs` (`state`);