-- the worked example of plugins/schedule/RULES.md (today = 2024-10-01); ids 3, 10, 11, 13, 14 are bad rows so N = 15
CREATE TABLE contacts (id INTEGER PRIMARY KEY, first_name TEXT, email TEXT, state TEXT,
                       zip_code TEXT, birth_date TEXT, effective_date TEXT);
INSERT INTO contacts (id, email, state, zip_code, birth_date, effective_date) VALUES
 (1, 'c1@example.com', 'TX', NULL, '1950-12-15', '2020-01-10'),
 (2, 'c2@example.com', 'CA', NULL, '1955-03-15', '2020-01-10'),
 (3, 'not-an-email', 'TX', NULL, '1950-01-01', NULL),
 (4, 'c4@example.com', 'NV', NULL, '1963-05-15', '2022-07-20'),
 (5, 'c5@example.com', 'MO', NULL, '1961-03-10', '2022-06-15'),
 (6, 'c6@example.com', 'NY', NULL, '1956-11-11', '2021-11-11'),
 (7, 'c7@example.com', 'TX', NULL, '1964-04-15', '2024-03-01'),
 (8, 'c8@example.com', 'CA', NULL, '1952-02-29', NULL),
 (9, 'c9@example.com', 'OR', NULL, '1959-10-20', '2023-08-15'),
 (10, 'c10@example.com', 'TX', NULL, '1961-02-30', NULL),
 (11, 'c11@example.com', 'TX', NULL, NULL, '2020/01/01'),
 (12, 'c12@example.com', 'CA', NULL, '1950-12-31', '2019-12-31'),
 (13, 'c13@example', 'TX', NULL, NULL, NULL),
 (14, 'c14@example.com', 'TX', NULL, '1960-01-01x', NULL),
 (15, 'c15@example.com', 'XX', NULL, '1970-10-05', '2020-10-05'),
 (16, NULL, 'TX', NULL, '1970-10-05', NULL);
