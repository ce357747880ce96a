module mul8(input clk, input signed [7:0] a, input signed [7:0] b, output reg signed [15:0] p);
  always @(posedge clk) p <= a * b;
endmodule
module tree128(input clk, input [128*16-1:0] x, output reg signed [22:0] s);
  integer i; reg signed [22:0] acc;
  always @(*) begin acc = 0; for (i = 0; i < 128; i = i + 1) acc = acc + $signed(x[i*16 +: 16]); end
  always @(posedge clk) s <= acc;
endmodule
module mac8(input clk, input rst, input signed [7:0] a, input signed [7:0] b, output reg signed [23:0] acc);
  always @(posedge clk) acc <= rst ? 0 : acc + a * b;
endmodule
